#include "pool/dm_pool.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "base/subprocess.h"
#include "dm/block_device.h"
#include "dm/device_mapper.h"
#include "dm/pool_resize.h"
#include "dm/thin.h"

namespace thinsnap {
namespace {

constexpr char kThinInfix[] = "-thin-";
// Longest decimal thin id: kMaxThinId = 16777215.
constexpr size_t kMaxIdDigits = 8;
// How often Deactivate retries a busy remove (a scanner such as blkid may
// hold the device for a moment) before falling back to deferred removal.
constexpr int kBusyRetries = 3;
constexpr std::chrono::milliseconds kBusyDelay{10};
constexpr std::chrono::seconds kThinLsTimeout{120};

Status CheckId(ThinId id) {
  if (id > kMaxThinId)
    return Status::InvalidArgument("thin id " + std::to_string(id) + " > 2^24-1");
  return Status::Ok();
}

// A block-device node for `dev` that thin_ls can open, preferring the ones
// udev or devtmpfs made; failing those, a private node made here and removed
// with this object.
class DevNode {
 public:
  DevNode() = default;
  DevNode(const DevNode&) = delete;
  DevNode& operator=(const DevNode&) = delete;
  ~DevNode() {
    if (!tmp_dir_.empty()) {
      unlink(path_.c_str());
      rmdir(tmp_dir_.c_str());
    }
  }

  Status Find(dm::DevNum dev) {
    std::vector<std::string> candidates = {"/dev/block/" + dev.ToString()};
    std::ifstream uevent("/sys/dev/block/" + dev.ToString() + "/uevent");
    for (std::string line; std::getline(uevent, line);) {
      if (line.rfind("DEVNAME=", 0) == 0) candidates.push_back("/dev/" + line.substr(8));
    }
    for (const std::string& c : candidates) {
      auto d = dm::BlockDevNum(c);
      if (d.ok() && *d == dev) {
        path_ = c;
        return Status::Ok();
      }
    }
    char tmpl[] = "/tmp/thinsnap-meta-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return Status::FromErrno(errno, "mkdtemp");
    tmp_dir_ = tmpl;
    path_ = tmp_dir_ + "/meta";
    if (mknod(path_.c_str(), S_IFBLK | 0600, makedev(dev.major, dev.minor)) != 0) {
      return Status::FromErrno(errno, "mknod " + path_);
    }
    return Status::Ok();
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_dir_;
};

class DmPool final : public ThinPool {
 public:
  DmPool(std::string name, dm::DevNum dev, uint64_t block_bytes)
      : name_(std::move(name)), dev_(dev), block_bytes_(block_bytes) {}

  const std::string& name() const override { return name_; }
  uint64_t block_bytes() const override { return block_bytes_; }

  Status CreateThin(ThinId id) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    std::lock_guard<std::mutex> lock(msg_mu_);
    return dm::SendCreateThin(name_, id);
  }

  Status CreateSnap(ThinId id, ThinId origin) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    THINSNAP_RETURN_IF_ERROR(CheckId(origin));
    // An inactive origin (a committed layer, the base device) needs no
    // suspend, so snapshots of it need not take turns: the caller does not
    // activate it meanwhile.
    auto info = dm::GetInfo(ThinName(origin));
    if (!info.ok()) return info.status();
    if (!info->exists) return SnapMessage(id, origin);
    OriginHold hold(this, origin);
    // The kernel requires a live origin to be quiescent while its mappings
    // are shared. Resume no matter what happened after the suspend attempt:
    // a device left suspended hangs every I/O to it.
    Status st = dm::Suspend(ThinName(origin));
    if (st.ok()) st = SnapMessage(id, origin);
    Status resumed = ResumeOrigin(origin);
    if (!st.ok()) return st;
    return resumed;
  }

  Status Delete(ThinId id) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    std::lock_guard<std::mutex> lock(msg_mu_);
    return dm::SendDelete(name_, id);
  }

  // Concurrent callers share readings, so a burst of Prepares (each checks
  // free space) costs one or two status ioctls instead of one each. A caller
  // only takes a reading that started after it called, so it never sees
  // anything older than a private query would have shown it.
  Result<PoolStatus> QueryStatus() override {
    std::unique_lock<std::mutex> lock(status_mu_);
    const uint64_t need = status_started_ + 1;
    for (;;) {
      if (status_done_ >= need) return status_last_;
      if (!status_in_flight_) break;
      status_cv_.wait(lock);
    }
    const uint64_t mine = ++status_started_;
    status_in_flight_ = true;
    lock.unlock();
    Result<PoolStatus> reading = ReadStatus();
    lock.lock();
    status_last_ = reading;
    status_done_ = mine;
    status_in_flight_ = false;
    status_cv_.notify_all();
    return reading;
  }

  Result<PoolStatus> ReadStatus() {
    // No metadata commit: nothing here needs one, and it would cost a
    // synchronous write on every Prepare.
    auto lines = dm::GetStatus(name_, /*no_flush=*/true);
    if (!lines.ok()) return lines.status();
    if (lines->size() != 1) return Status::FailedPrecondition(name_ + " is not a single target");
    auto parsed = dm::ParseThinPoolStatus(lines->front().ToString());
    if (!parsed.ok()) return parsed.status();
    PoolStatus out;
    out.data_block_bytes = block_bytes_;
    out.failed = parsed->failed;
    if (out.failed) return out;
    out.transaction_id = parsed->transaction_id;
    out.data_used_blocks = parsed->data_used_blocks;
    out.data_total_blocks = parsed->data_total_blocks;
    out.meta_used_blocks = parsed->meta_used_blocks;
    out.meta_total_blocks = parsed->meta_total_blocks;
    out.read_only = parsed->mode == dm::PoolMode::kReadOnly;
    out.out_of_data_space = parsed->mode == dm::PoolMode::kOutOfDataSpace;
    out.needs_check = parsed->needs_check;
    out.error_if_no_space = parsed->error_if_no_space;
    return out;
  }

  Result<std::vector<ThinId>> ListThinIds() override {
    auto rows = ThinLs({"DEV"});
    if (!rows.ok()) return rows.status();
    std::vector<ThinId> ids;
    for (const auto& row : *rows) ids.push_back(static_cast<ThinId>(row[0]));
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  Result<std::vector<ThinUsage>> ListUsage() override {
    auto rows = ThinLs({"DEV", "MAPPED_BYTES", "EXCLUSIVE_BYTES"});
    if (!rows.ok()) return rows.status();
    std::vector<ThinUsage> usage;
    for (const auto& row : *rows) usage.push_back({static_cast<ThinId>(row[0]), row[1], row[2]});
    std::sort(usage.begin(), usage.end(),
              [](const ThinUsage& a, const ThinUsage& b) { return a.id < b.id; });
    return usage;
  }

  std::string DevicePath(ThinId id) const override { return dm::MapperPath(ThinName(id)); }

  Status Activate(ThinId id, uint64_t size_bytes, Access access) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    if (size_bytes == 0 || size_bytes % 512 != 0) {
      return Status::InvalidArgument("thin size must be a non-zero multiple of 512");
    }
    const std::string name = ThinName(id);
    const dm::Target target = dm::ThinTarget(size_bytes / 512, dev_, id);
    const bool read_only = access == Access::kReadOnly;
    dm::CreateOptions options;
    options.read_only = read_only;
    Status st = dm::Create(name, {target}, options);
    // Already there: fine if it is exactly what was asked for (a retry, or a
    // concurrent activation of the same id).
    if (st.code() == Code::kAlreadyExists) return CheckActive(name, target, read_only);
    return st;
  }

  Status Deactivate(ThinId id) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    const std::string name = ThinName(id);
    // Push written data through to the pool: a flush makes the pool commit
    // its metadata, so the blocks survive a crash right after this call.
    int fd = open(dm::MapperPath(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      const bool synced = fsync(fd) == 0;
      const int err = errno;
      close(fd);
      if (!synced) return Status::FromErrno(err, "flush " + name);
    }
    return Remove(name);
  }

  Status DeactivateForDelete(ThinId id) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    return Remove(ThinName(id));
  }

  // Removes a thin device, retrying briefly while something (e.g. blkid)
  // holds it, then deferring the removal to its last close.
  static Status Remove(const std::string& name) {
    Status st = dm::Remove(
        name, dm::RemoveOptions{
                  .busy_retries = kBusyRetries, .retry_delay = kBusyDelay, .defer_if_busy = true});
    if (st.code() == Code::kNotFound) return Status::Ok();
    return st;
  }

  Result<std::vector<ThinId>> ListActive() override {
    auto devices = dm::ListDevices();
    if (!devices.ok()) return devices.status();
    const std::string prefix = name_ + kThinInfix;
    std::vector<ThinId> ids;
    for (const dm::DeviceEntry& d : *devices) {
      if (d.name.size() <= prefix.size() || d.name.compare(0, prefix.size(), prefix) != 0) {
        continue;
      }
      std::string_view digits(d.name);
      digits.remove_prefix(prefix.size());
      ThinId id = 0;
      auto r = std::from_chars(digits.data(), digits.data() + digits.size(), id);
      // Only names this class would produce ("07" or "1x" are someone else's).
      if (r.ec != std::errc() || r.ptr != digits.data() + digits.size() || id > kMaxThinId ||
          std::to_string(id) != digits) {
        continue;
      }
      ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  Result<uint64_t> MappedBytes(ThinId id) override {
    auto st = ThinStatusOf(id);
    if (!st.ok()) return st.status();
    return st->mapped_sectors * 512;
  }

  Status DiscardAll(ThinId id, uint64_t span_bytes) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    const std::string name = ThinName(id);
    auto info = dm::GetInfo(name);
    if (!info.ok()) return info.status();
    const bool temporary = !info->exists;
    if (temporary) THINSNAP_RETURN_IF_ERROR(Activate(id, span_bytes, Access::kReadWrite));
    Status st = DiscardMapped(id);
    // The id is about to be deleted: no flush is owed to anyone.
    if (temporary) {
      Status removed = DeactivateForDelete(id);
      if (st.ok()) st = removed;
    }
    return st;
  }

  Status Grow(uint64_t data_bytes, uint64_t meta_bytes) override {
    std::lock_guard<std::mutex> lock(msg_mu_);  // no pool message during the reload
    auto grown = dm::GrowLoopPool(name_, data_bytes, meta_bytes);
    return grown.ok() ? Status::Ok() : grown.status();
  }

  Status DiscardUnused(ThinId id, const UnusedRangesFn& find_unused) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    auto device = dm::ExclusiveDevice::Open(DevicePath(id));
    if (!device.ok()) return device.status();
    auto ranges = find_unused();
    if (!ranges.ok()) return ranges.status();
    std::vector<dm::ByteRange> spans;
    spans.reserve(ranges->size());
    for (const ByteRange& r : *ranges) spans.push_back({r.offset, r.length});
    return device->Discard(spans);
  }

 private:
  // Serialises CreateSnap calls on one origin; others proceed.
  class OriginHold {
   public:
    OriginHold(DmPool* pool, ThinId origin) : pool_(pool), origin_(origin) {
      std::unique_lock<std::mutex> lock(pool_->origins_mu_);
      pool_->origins_cv_.wait(lock, [&] { return !pool_->origins_.contains(origin_); });
      pool_->origins_.insert(origin_);
    }
    ~OriginHold() {
      {
        std::lock_guard<std::mutex> lock(pool_->origins_mu_);
        pool_->origins_.erase(origin_);
      }
      pool_->origins_cv_.notify_all();
    }
    OriginHold(const OriginHold&) = delete;
    OriginHold& operator=(const OriginHold&) = delete;

   private:
    DmPool* pool_;
    ThinId origin_;
  };

  std::string ThinName(ThinId id) const { return name_ + kThinInfix + std::to_string(id); }

  Result<dm::ThinStatus> ThinStatusOf(ThinId id) {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    auto lines = dm::GetStatus(ThinName(id));
    if (!lines.ok()) return lines.status();
    if (lines->size() != 1) {
      return Status::FailedPrecondition(ThinName(id) + " is not a single thin target");
    }
    auto parsed = dm::ParseThinStatus(lines->front().ToString());
    if (!parsed.ok()) return parsed.status();
    if (parsed->failed) return Status::Internal(ThinName(id) + " reports Fail");
    return parsed;
  }

  // Discards [0, highest mapped sector] of an active device. The kernel walks
  // a discard block by block looking for mappings, so bounding it by the
  // highest mapping keeps a sparse device's discard cheap.
  Status DiscardMapped(ThinId id) {
    auto st = ThinStatusOf(id);
    if (!st.ok()) return st.status();
    if (!st->highest_mapped_sector) return Status::Ok();  // nothing mapped
    const uint64_t end_bytes = (*st->highest_mapped_sector + 1) * 512;
    const uint64_t span = (end_bytes + block_bytes_ - 1) / block_bytes_ * block_bytes_;
    auto device = dm::ExclusiveDevice::Open(DevicePath(id));
    if (!device.ok()) return device.status();
    return device->Discard({{0, span}});
  }

  // Runs thin_ls on a held metadata snapshot (exact, and safe while the pool
  // is live) and returns its numeric columns, one row per thin id.
  Result<std::vector<std::vector<uint64_t>>> ThinLs(const std::vector<std::string>& columns) {
    // The pool holds at most one metadata snapshot; these calls take turns.
    std::lock_guard<std::mutex> snap_lock(meta_snap_mu_);
    auto table = PoolTable();
    if (!table.ok()) return table.status();
    DevNode node;
    THINSNAP_RETURN_IF_ERROR(node.Find(table->metadata_dev));
    THINSNAP_RETURN_IF_ERROR(ReserveMetadataSnap());
    std::string fields;
    for (const std::string& c : columns) fields += (fields.empty() ? "" : ",") + c;
    RunOptions run_options;
    run_options.timeout = kThinLsTimeout;
    auto out = RunCommand({"thin_ls", "--metadata-snap", "--no-headers", "-o", fields, node.path()},
                          run_options);
    Status released;
    {
      std::lock_guard<std::mutex> lock(msg_mu_);
      released = dm::SendReleaseMetadataSnap(name_);
    }
    if (!out.ok()) return out.status().Annotate("thin_ls");
    if (out->exit_code != 0) {
      return Status::Internal("thin_ls exited " + std::to_string(out->exit_code) + ": " + out->err);
    }
    if (!released.ok()) return released;
    std::vector<std::vector<uint64_t>> rows;
    size_t pos = 0;
    const std::string& text = out->out;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      std::vector<uint64_t> row;
      for (;;) {
        while (!line.empty() && (line.front() == ' ' || line.front() == '\r'))
          line.remove_prefix(1);
        if (line.empty()) break;
        uint64_t v = 0;
        auto r = std::from_chars(line.data(), line.data() + line.size(), v);
        if (r.ec != std::errc() ||
            (r.ptr != line.data() + line.size() && *r.ptr != ' ' && *r.ptr != '\r')) {
          return Status::Internal("unexpected thin_ls line: '" + std::string(line) + "'");
        }
        row.push_back(v);
        line.remove_prefix(static_cast<size_t>(r.ptr - line.data()));
      }
      if (row.empty()) continue;
      if (row.size() != columns.size() || row[0] > kMaxThinId) {
        return Status::Internal("unexpected thin_ls row of " + std::to_string(row.size()) +
                                " fields");
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  Status SnapMessage(ThinId id, ThinId origin) {
    std::lock_guard<std::mutex> lock(msg_mu_);
    return dm::SendCreateSnap(name_, id, origin);
  }

  Status ResumeOrigin(ThinId origin) {
    Status st;
    for (int attempt = 0; attempt < 3; ++attempt) {
      st = dm::Resume(ThinName(origin));
      if (st.ok()) return st;
      std::this_thread::sleep_for(kBusyDelay);
    }
    return st.Annotate("origin " + ThinName(origin) + " may be left suspended");
  }

  Status ReserveMetadataSnap() {
    std::lock_guard<std::mutex> lock(msg_mu_);
    Status st = dm::SendReserveMetadataSnap(name_);
    if (st.code() != Code::kUnavailable) return st;
    // EBUSY: a snapshot is already held, left by a process that died between
    // reserve and release (this one's calls take turns). Drop it and retry.
    THINSNAP_RETURN_IF_ERROR(dm::SendReleaseMetadataSnap(name_));
    return dm::SendReserveMetadataSnap(name_);
  }

  Result<dm::ThinPoolTable> PoolTable() {
    auto table = dm::GetTable(name_);
    if (!table.ok()) return table.status();
    if (table->size() != 1 || table->front().type != "thin-pool") {
      return Status::FailedPrecondition(name_ + " is not a thin-pool");
    }
    return dm::ParseThinPoolTable(table->front().ToString());
  }

  Status CheckActive(const std::string& name, const dm::Target& want, bool read_only) {
    auto info = dm::GetInfo(name);
    if (!info.ok()) return info.status();
    auto table = dm::GetTable(name);
    if (!table.ok()) return table.status();
    if (!info->exists || table->size() != 1 || table->front().ToString() != want.ToString() ||
        info->read_only != read_only) {
      return Status::FailedPrecondition(name + " is active with a different table or access");
    }
    // A device left suspended (say, by a crash mid-snapshot) would hang I/O.
    if (info->suspended) return dm::Resume(name);
    return Status::Ok();
  }

  const std::string name_;
  const dm::DevNum dev_;
  const uint64_t block_bytes_;

  std::mutex msg_mu_;  // serialises pool messages

  // QueryStatus readings, shared by concurrent callers.
  std::mutex status_mu_;
  std::condition_variable status_cv_;
  uint64_t status_started_ = 0;  // readings started
  uint64_t status_done_ = 0;     // number of the reading in status_last_
  bool status_in_flight_ = false;
  Result<PoolStatus> status_last_ = Status::Unavailable("no pool status read yet");
  std::mutex meta_snap_mu_;  // one metadata snapshot at a time (ListThinIds)

  std::mutex origins_mu_;
  std::condition_variable origins_cv_;
  std::set<ThinId> origins_;  // origins being snapshotted by CreateSnap
};

}  // namespace

Result<std::unique_ptr<ThinPool>> OpenDmPool(const std::string& pool_name) {
  THINSNAP_RETURN_IF_ERROR(dm::ValidateName(pool_name));
  if (pool_name.size() + sizeof(kThinInfix) - 1 + kMaxIdDigits > dm::kMaxNameLength) {
    return Status::InvalidArgument("pool name '" + pool_name +
                                   "' leaves no room for thin device names");
  }
  auto info = dm::GetInfo(pool_name);
  if (!info.ok()) return info.status();
  if (!info->exists) return Status::NotFound("no device-mapper device " + pool_name);
  auto table = dm::GetTable(pool_name);
  if (!table.ok()) return table.status();
  if (table->size() != 1 || table->front().type != "thin-pool") {
    return Status::FailedPrecondition(pool_name + " is not a thin-pool device");
  }
  auto parsed = dm::ParseThinPoolTable(table->front().ToString());
  if (!parsed.ok()) return parsed.status();
  return std::unique_ptr<ThinPool>(
      std::make_unique<DmPool>(pool_name, info->dev, parsed->block_sectors * 512));
}

}  // namespace thinsnap
