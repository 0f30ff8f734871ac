#include "fake/fake_pool.h"

#include <map>
#include <mutex>
#include <set>

namespace thinsnap::testing {
namespace {

struct Device {
  uint64_t mapped_bytes = 0;
};

struct Active {
  Access access;
  bool open = false;
};

class FakePoolState final : public FakePoolControl {
 public:
  std::vector<ThinId> ThinIds() const override {
    std::lock_guard lock(mu);
    std::vector<ThinId> ids;
    for (const auto& [id, dev] : devices) ids.push_back(id);
    return ids;
  }
  std::vector<ThinId> ActiveIds() const override {
    std::lock_guard lock(mu);
    std::vector<ThinId> ids;
    for (const auto& [id, a] : active) ids.push_back(id);
    return ids;
  }
  void SetMappedBytes(ThinId id, uint64_t bytes) override {
    std::lock_guard lock(mu);
    devices[id].mapped_bytes = bytes;
  }
  void SetDataUsage(uint64_t used, uint64_t total) override {
    std::lock_guard lock(mu);
    data_used = used;
    data_total = total;
  }
  void SetNeedsCheck(bool v) override {
    std::lock_guard lock(mu);
    needs_check = v;
  }
  void SetOpen(ThinId id, bool open) override {
    std::lock_guard lock(mu);
    if (auto it = active.find(id); it != active.end()) it->second.open = open;
  }
  void FailNextMessage(int err) override {
    std::lock_guard lock(mu);
    fail_next = err;
  }

  // Returns the injected errno once, then clears it.
  int TakeFailure() {
    int err = fail_next;
    fail_next = 0;
    return err;
  }

  std::vector<ThinId> DiscardedIds() const override {
    std::lock_guard lock(mu);
    return discarded_ids;
  }
  std::vector<ByteRange> DiscardedRanges(ThinId id) const override {
    std::lock_guard lock(mu);
    auto it = discarded_ranges.find(id);
    return it == discarded_ranges.end() ? std::vector<ByteRange>{} : it->second;
  }

  void SetOwnRanges(ThinId id, std::vector<ByteRange> ranges) override {
    std::lock_guard lock(mu);
    own_ranges[id] = std::move(ranges);
  }

  int Grows() const override {
    std::lock_guard lock(mu);
    return grows;
  }

  mutable std::mutex mu;
  int grows = 0;
  std::vector<ThinId> discarded_ids;
  std::map<ThinId, std::vector<ByteRange>> own_ranges;
  std::map<ThinId, std::vector<ByteRange>> discarded_ranges;
  std::map<ThinId, Device> devices;
  std::map<ThinId, Active> active;
  uint64_t data_used = 0;
  uint64_t data_total = 1 << 20;
  bool needs_check = false;
  int fail_next = 0;
};

class FakePool final : public ThinPool {
 public:
  explicit FakePool(std::shared_ptr<FakePoolState> s) : s_(std::move(s)) {}

  const std::string& name() const override { return name_; }
  uint64_t block_bytes() const override { return 64 << 10; }

  Status CreateThin(ThinId id) override {
    std::lock_guard lock(s_->mu);
    if (int err = s_->TakeFailure()) return Status::FromErrno(err, "create_thin");
    if (s_->devices.count(id)) return Status::FromErrno(EEXIST, "create_thin");
    s_->devices[id] = {};
    return Status::Ok();
  }
  Status CreateSnap(ThinId id, ThinId origin) override {
    std::lock_guard lock(s_->mu);
    if (int err = s_->TakeFailure()) return Status::FromErrno(err, "create_snap");
    if (s_->devices.count(id)) return Status::FromErrno(EEXIST, "create_snap");
    auto it = s_->devices.find(origin);
    if (it == s_->devices.end()) return Status::FromErrno(ENODATA, "create_snap origin");
    s_->devices[id] = it->second;
    return Status::Ok();
  }
  Status Delete(ThinId id) override {
    std::lock_guard lock(s_->mu);
    if (int err = s_->TakeFailure()) return Status::FromErrno(err, "delete");
    if (!s_->devices.count(id)) return Status::FromErrno(ENODATA, "delete");
    if (s_->active.count(id)) return Status::FromErrno(EBUSY, "delete");
    s_->devices.erase(id);
    return Status::Ok();
  }
  Result<PoolStatus> QueryStatus() override {
    std::lock_guard lock(s_->mu);
    PoolStatus st;
    st.data_block_bytes = 64 << 10;
    st.data_used_blocks = s_->data_used;
    st.data_total_blocks = s_->data_total;
    st.meta_used_blocks = 10 + s_->devices.size();
    st.meta_total_blocks = 1 << 16;
    st.needs_check = s_->needs_check;
    st.error_if_no_space = true;
    return st;
  }
  Result<std::vector<ThinId>> ListThinIds() override { return s_->ThinIds(); }
  Result<std::vector<ThinUsage>> ListUsage() override {
    std::lock_guard lock(s_->mu);
    std::vector<ThinUsage> out;
    for (const auto& [id, dev] : s_->devices) out.push_back({id, dev.mapped_bytes, 0});
    return out;
  }

  std::string DevicePath(ThinId id) const override {
    return "/dev/mapper/fake-thin-" + std::to_string(id);
  }
  Status Activate(ThinId id, uint64_t, Access access) override {
    std::lock_guard lock(s_->mu);
    if (!s_->devices.count(id)) return Status::FromErrno(ENODATA, "activate");
    auto it = s_->active.find(id);
    if (it != s_->active.end()) {
      if (it->second.access == access) return Status::Ok();
      return Status::FromErrno(EBUSY, "activate with other access");
    }
    s_->active[id] = {access, false};
    return Status::Ok();
  }
  Status Deactivate(ThinId id) override {
    std::lock_guard lock(s_->mu);
    auto it = s_->active.find(id);
    if (it == s_->active.end()) return Status::Ok();
    if (it->second.open) return Status::FromErrno(EBUSY, "deactivate");
    s_->active.erase(it);
    return Status::Ok();
  }
  Status DeactivateForDelete(ThinId id) override { return Deactivate(id); }
  Status Withdraw(ThinId id) override { return Deactivate(id); }
  bool DiscardsReachData() const override { return true; }
  // The fake keeps no mappings: a device's own ranges are what a test set
  // with SetOwnRanges, or none.
  Result<std::vector<Result<std::vector<ByteRange>>>> OwnRanges(
      const std::vector<ThinId>& ids) override {
    std::lock_guard lock(s_->mu);
    std::vector<Result<std::vector<ByteRange>>> out;
    for (ThinId id : ids) {
      if (!s_->devices.count(id)) {
        out.push_back(Status::NotFound("thin id " + std::to_string(id) + " is gone"));
      } else if (s_->active.count(id)) {
        out.push_back(Status::FromErrno(EBUSY, "own ranges of an active id"));
      } else {
        auto it = s_->own_ranges.find(id);
        out.push_back(it == s_->own_ranges.end() ? std::vector<ByteRange>{} : it->second);
      }
    }
    return out;
  }

  Result<std::vector<ThinId>> ListActive() override { return s_->ActiveIds(); }
  // The fake's activations are atomic: nothing is ever half-made.
  Result<std::vector<ThinId>> ListHalfMade() override { return std::vector<ThinId>{}; }
  Result<uint64_t> MappedBytes(ThinId id) override {
    std::lock_guard lock(s_->mu);
    if (!s_->active.count(id)) return Status::FromErrno(ENXIO, "status of inactive device");
    return s_->devices[id].mapped_bytes;
  }

  Status Grow(uint64_t data_bytes, uint64_t) override {
    std::lock_guard lock(s_->mu);
    const uint64_t blocks = data_bytes / (64 << 10);
    if (blocks > s_->data_total) s_->data_total = blocks;
    ++s_->grows;
    return Status::Ok();
  }

  Status DiscardInactive(ThinId id, uint64_t,
                         const std::optional<std::vector<ByteRange>>& ranges) override {
    std::lock_guard lock(s_->mu);
    auto dev = s_->devices.find(id);
    if (dev == s_->devices.end()) return Status::FromErrno(ENODATA, "discard of a missing id");
    if (s_->active.count(id)) return Status::FailedPrecondition("discard of an active id");
    if (ranges && ranges->empty()) return Status::Ok();
    dev->second.mapped_bytes = 0;
    s_->discarded_ids.push_back(id);
    auto& out = s_->discarded_ranges[id];
    if (ranges) out.insert(out.end(), ranges->begin(), ranges->end());
    return Status::Ok();
  }
  Status DiscardUnused(ThinId id, const UnusedRangesFn& find_unused) override {
    {
      std::lock_guard lock(s_->mu);
      auto it = s_->active.find(id);
      if (it == s_->active.end()) return Status::FromErrno(ENXIO, "discard on inactive device");
      if (it->second.open) return Status::FromErrno(EBUSY, "discard");
    }
    auto ranges = find_unused();
    if (!ranges.ok()) return ranges.status();
    std::lock_guard lock(s_->mu);
    auto& out = s_->discarded_ranges[id];
    out.insert(out.end(), ranges->begin(), ranges->end());
    return Status::Ok();
  }

 private:
  std::shared_ptr<FakePoolState> s_;
  std::string name_ = "fake";
};

class FakeFilesystem final : public Filesystem {
 public:
  explicit FakeFilesystem(std::shared_ptr<FakeFilesystemControl> control)
      : control_(control ? std::move(control) : std::make_shared<FakeFilesystemControl>()) {}
  const std::string& type() const override { return type_; }
  Status Format(const std::string&) override { return Status::Ok(); }
  Result<int64_t> InodesUsed(const std::string&) override { return int64_t{11}; }
  Status Grow(const std::string&, uint64_t) override {
    if (control_->fail_next_grow.exchange(false)) return Status::FromErrno(EIO, "resize2fs");
    ++control_->grows;
    return Status::Ok();
  }
  Result<std::vector<ByteRange>> UnusedRanges(const std::string&, uint64_t align,
                                              int64_t) override {
    return std::vector<ByteRange>{{align, 4 * align}};
  }

 private:
  std::shared_ptr<FakeFilesystemControl> control_;
  std::string type_ = "ext4";
};

}  // namespace

std::shared_ptr<FakePoolControl> MakeFakePoolState() { return std::make_shared<FakePoolState>(); }

std::unique_ptr<ThinPool> MakeFakePool(std::shared_ptr<FakePoolControl> state) {
  return std::make_unique<FakePool>(std::static_pointer_cast<FakePoolState>(std::move(state)));
}

std::unique_ptr<ThinPool> MakeFakePool() { return MakeFakePool(MakeFakePoolState()); }

std::unique_ptr<Filesystem> MakeFakeFilesystem(std::shared_ptr<FakeFilesystemControl> control) {
  return std::make_unique<FakeFilesystem>(std::move(control));
}

}  // namespace thinsnap::testing
