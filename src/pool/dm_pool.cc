#include "pool/dm_pool.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "base/failpoint.h"
#include "base/subprocess.h"
#include "dm/block_device.h"
#include "dm/device_mapper.h"
#include "dm/pool_resize.h"
#include "dm/thin.h"
#include "pool/thin_id_locks.h"
#include "pool/thin_metadata.h"

namespace thinsnap {
namespace {

constexpr char kThinInfix[] = "-thin-";
// A device activated only to discard a deleted snapshot's blocks: no client
// was ever given this name, so nobody else can have it open.
constexpr char kReclaimInfix[] = "-reclaim-";
// Longest decimal thin id: kMaxThinId = 16777215.
constexpr size_t kMaxIdDigits = 8;
// How often a remove is retried while the device is busy (a scanner such as
// blkid may hold it for a moment). Deactivate then falls back to deferred
// removal; DeactivateForDelete gives up and leaves the device alone.
constexpr int kBusyRetries = 3;
constexpr std::chrono::milliseconds kBusyDelay{10};
constexpr std::chrono::seconds kThinToolTimeout{120};

// The pool's status line, parsed, without a metadata commit (nothing that
// reads it needs one, and it would cost a synchronous write on every Prepare).
Result<dm::ThinPoolStatus> ReadPoolStatus(const std::string& pool) {
  auto lines = dm::GetStatus(pool, /*no_flush=*/true);
  if (!lines.ok()) return lines.status();
  if (lines->size() != 1) return Status::FailedPrecondition(pool + " is not a single target");
  return dm::ParseThinPoolStatus(lines->front().ToString());
}

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
  DmPool(std::string name, dm::DevNum dev, uint64_t block_bytes, bool discards_reach_data)
      : name_(std::move(name)),
        dev_(dev),
        block_bytes_(block_bytes),
        discards_reach_data_(discards_reach_data) {}

  const std::string& name() const override { return name_; }
  uint64_t block_bytes() const override { return block_bytes_; }
  bool DiscardsReachData() const override { return discards_reach_data_; }

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
    ThinIdLocks::Hold origin_lock(origin_locks_, origin);
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
    auto parsed = ReadPoolStatus(name_);
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
    options.uuid = Uuid(name);
    Status st = dm::Create(name, {target}, options);
    if (st.code() == Code::kAlreadyExists) return CompleteActivation(name, target, read_only);
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
    return Remove(name, /*defer_if_busy=*/true);
  }

  Status DeactivateForDelete(ThinId id) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    THINSNAP_RETURN_IF_ERROR(Remove(ReclaimName(id), /*defer_if_busy=*/false));
    // A deferred removal scheduled by an earlier Deactivate still leaves the
    // device open: the remove below then fails with EBUSY as well.
    return Remove(ThinName(id), /*defer_if_busy=*/false)
        .Annotate("thin id " + std::to_string(id) + " is kept while open");
  }

  // Removes a thin device (a missing one is not an error), retrying briefly
  // while something (e.g. blkid) holds it; then, if asked, defers the
  // removal to its last close, else returns Unavailable (EBUSY).
  static Status Remove(const std::string& name, bool defer_if_busy) {
    Status st = dm::Remove(name, dm::RemoveOptions{.busy_retries = kBusyRetries,
                                                   .retry_delay = kBusyDelay,
                                                   .defer_if_busy = defer_if_busy});
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

  Result<std::vector<ThinId>> ListHalfMade() override {
    auto active = ListActive();
    if (!active.ok()) return active.status();
    std::vector<ThinId> half_made;
    for (ThinId id : *active) {
      const std::string name = ThinName(id);
      auto info = dm::GetInfo(name);
      if (!info.ok()) return info.status();
      if (!info->exists) continue;  // removed meanwhile
      auto node = dm::BlockDevNum(dm::MapperPath(name));
      if (!info->live_table || info->suspended || !node.ok() || !(*node == info->dev)) {
        half_made.push_back(id);
      }
    }
    return half_made;
  }

  Result<uint64_t> MappedBytes(ThinId id) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    auto st = ThinStatusOf(ThinName(id));
    if (!st.ok()) return st.status();
    return st->mapped_sectors * 512;
  }

  Status Withdraw(ThinId id) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    const std::string name = ThinName(id);
    auto info = dm::GetInfo(name);
    if (!info.ok()) return info.status();
    if (!info->exists) return Status::Ok();
    // Made before thin devices had uuids (dm::Rename needs one), or read-only
    // (a discard needs a writable table): a removal, and a private
    // activation later.
    if (info->uuid.empty() || info->read_only) return DeactivateForDelete(id);
    if (info->open_count > 0 || info->deferred_remove) {
      return Status::FromErrno(
          EBUSY, name + " is open: thin id " + std::to_string(id) + " is kept while open");
    }
    const std::string hidden = ReclaimName(id);
    Status st = dm::Rename(name, hidden);
    if (st.code() == Code::kAlreadyExists) {  // left by a crash
      THINSNAP_RETURN_IF_ERROR(Remove(hidden, /*defer_if_busy=*/false));
      st = dm::Rename(name, hidden);
    }
    THINSNAP_RETURN_IF_ERROR(st);
    // Whoever opened it between the check and the rename holds it now: it
    // goes back to them untouched.
    auto after = dm::GetInfo(hidden);
    if (!after.ok()) return after.status();
    if (after->open_count > 0) {
      Status back = dm::Rename(hidden, name);
      return Status::FromErrno(EBUSY, name + " was opened while being withdrawn; kept" +
                                          (back.ok() ? "" : " (" + back.ToString() + ")"));
    }
    return Status::Ok();
  }

  Status DiscardInactive(ThinId id, uint64_t span_bytes,
                         const std::optional<std::vector<ByteRange>>& ranges) override {
    THINSNAP_RETURN_IF_ERROR(CheckId(id));
    auto info = dm::GetInfo(ThinName(id));
    if (!info.ok()) return info.status();
    if (info->exists) {
      return Status::FailedPrecondition(ThinName(id) +
                                        " is active; deactivate it before discarding");
    }
    const std::string name = ReclaimName(id);
    auto hidden = dm::GetInfo(name);
    if (!hidden.ok()) return hidden.status();
    const bool nothing = ranges && ranges->empty();
    const dm::Target target = dm::ThinTarget(span_bytes / 512, dev_, id);
    if (!hidden->exists) {
      if (nothing) return Status::Ok();
      THINSNAP_RETURN_IF_ERROR(dm::Create(name, {target}, dm::CreateOptions{.uuid = Uuid(name)}));
    } else if (!nothing) {
      // Withdrawn, or made here before a kill: either may have been cut short.
      THINSNAP_RETURN_IF_ERROR(Revive(name, {target}, /*read_only=*/false, *hidden));
    }
    Status st = nothing  ? Status::Ok()
                : ranges ? DiscardRanges(name, *ranges)
                         : DiscardMapped(name);
    // The id is about to be deleted: no flush is owed to anyone.
    Status removed = Remove(name, /*defer_if_busy=*/false);
    return st.ok() ? removed : st;
  }

  Result<std::vector<Result<std::vector<ByteRange>>>> OwnRanges(
      const std::vector<ThinId>& ids) override {
    if (ids.empty()) return std::vector<Result<std::vector<ByteRange>>>{};
    for (ThinId id : ids) THINSNAP_RETURN_IF_ERROR(CheckId(id));
    using Own = std::vector<Result<std::vector<ByteRange>>>;
    // The devices are inactive, so their mappings are committed and fixed.
    return ReadMetadata<Own>(
        [&](const std::string& meta, MetadataSource source) -> Result<Own> {
          THINSNAP_FAILPOINT("reclaim.after_metadata_read");
          return ReadOwnRanges(meta, source, ids, block_bytes_);
        },
        /*wait_for_snapshot=*/true);
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
    if (ranges->empty()) return Status::Ok();
    // Only the unused ranges the device maps: each BLKDISCARD is a round trip
    // through the pool's worker even where nothing is mapped, and most of a
    // layer's free space never was (or its parent's trim already unmapped it).
    // Discarding an unmapped range changes nothing, so this discards exactly
    // what discarding every range would. The device is held exclusively and
    // unmounted, so no write changes its mappings meanwhile; the flush makes
    // the pool commit the ones it has, so the metadata read sees them.
    // Whatever the metadata says, only free ranges of the filesystem are
    // discarded: a wrong answer could only leave space behind.
    std::vector<dm::ByteRange> spans;
    Status flushed = device->Flush();
    using Ranges = std::vector<ByteRange>;
    auto read = [&](const std::string& meta, MetadataSource source) -> Result<Ranges> {
      THINSNAP_FAILPOINT("commit.after_metadata_read");
      return ReadThinMappings(meta, source, id, block_bytes_);
    };
    Result<Ranges> mapped = flushed;
    if (flushed.ok()) mapped = ReadMetadata<Ranges>(read, /*wait_for_snapshot=*/false);
    if (mapped.ok()) {
      for (const ByteRange& r : IntersectRanges(*ranges, *mapped))
        spans.push_back({r.offset, r.length});
      return device->Discard(spans);
    }
    // Slower, but the space still comes back.
    spdlog::warn("{}: mappings unread ({}); discarding every unused range", ThinName(id),
                 mapped.status().ToString());
    for (const ByteRange& r : *ranges) spans.push_back({r.offset, r.length});
    return device->Discard(spans);
  }

 private:
  std::string ThinName(ThinId id) const { return name_ + kThinInfix + std::to_string(id); }
  // A dm uuid for the device `name` of this pool: unique while the name is
  // (the kernel refuses duplicates), and short whatever the pool's name.
  // Removals address devices by it (dm::Remove), which lets them run in
  // parallel even under DM_DISABLE_UDEV.
  std::string Uuid(const std::string& name) const {
    return "THINSNAP-" + dev_.ToString() + name.substr(name_.size());
  }
  std::string ReclaimName(ThinId id) const { return name_ + kReclaimInfix + std::to_string(id); }

  Result<dm::ThinStatus> ThinStatusOf(const std::string& name) {
    auto lines = dm::GetStatus(name);
    if (!lines.ok()) return lines.status();
    if (lines->size() != 1)
      return Status::FailedPrecondition(name + " is not a single thin target");
    auto parsed = dm::ParseThinStatus(lines->front().ToString());
    if (!parsed.ok()) return parsed.status();
    if (parsed->failed) return Status::Internal(name + " reports Fail");
    return parsed;
  }

  // Discards [0, highest mapped sector] of the active device `name`. The
  // kernel walks a discard block by block looking for mappings, so bounding
  // it by the highest mapping keeps a sparse device's discard cheap.
  Status DiscardMapped(const std::string& name) {
    auto st = ThinStatusOf(name);
    if (!st.ok()) return st.status();
    if (!st->highest_mapped_sector) return Status::Ok();  // nothing mapped
    const uint64_t end_bytes = (*st->highest_mapped_sector + 1) * 512;
    const uint64_t span = (end_bytes + block_bytes_ - 1) / block_bytes_ * block_bytes_;
    return DiscardRanges(name, {{0, span}});
  }

  // Discards `ranges` of the active device `name`, held exclusively.
  Status DiscardRanges(const std::string& name, const std::vector<ByteRange>& ranges) {
    auto device = dm::ExclusiveDevice::Open(dm::MapperPath(name));
    if (!device.ok()) return device.status();
    for (size_t i = 0; i < ranges.size(); ++i) {
      THINSNAP_RETURN_IF_ERROR(device->Discard({{ranges[i].offset, ranges[i].length}}));
      if (i == 0 && ranges.size() > 1) THINSNAP_FAILPOINT("reclaim.after_partial_discard");
    }
    return Status::Ok();
  }

  // Runs `read` on the pool's live metadata (thin_metadata.h: as of its last
  // commit, no metadata snapshot). If the pool keeps committing under it, it
  // runs again on a held metadata snapshot: if the pool's one snapshot is
  // free, or, with `wait_for_snapshot`, once it is (thin_ls may hold it).
  template <typename T>
  Result<T> ReadMetadata(
      const std::function<Result<T>(const std::string& meta, MetadataSource source)>& read,
      bool wait_for_snapshot) {
    DevNode node;
    THINSNAP_RETURN_IF_ERROR(FindMetadataDevice(node));
    Result<T> live = read(node.path(), MetadataSource::kLive);
    if (live.status().code() != Code::kUnavailable) return live;
    spdlog::info("pool {}: {}; reading a metadata snapshot instead", name_,
                 live.status().ToString());
    std::unique_lock<std::mutex> snap_lock(meta_snap_mu_, std::defer_lock);
    if (wait_for_snapshot) {
      snap_lock.lock();
    } else if (!snap_lock.try_lock()) {
      return live;
    }
    Result<T> held = live.status();
    THINSNAP_RETURN_IF_ERROR(WithMetadataSnapLocked(node.path(), [&](const std::string& meta) {
      held = read(meta, MetadataSource::kHeldSnapshot);
      return held.status();
    }));
    return held;
  }

  // A node of the pool's metadata device, as its table names it.
  Status FindMetadataDevice(DevNode& node) {
    auto table = PoolTable();
    if (!table.ok()) return table.status();
    return node.Find(table->metadata_dev);
  }

  // Holds a metadata snapshot of the pool (exact, and safe to read while the
  // pool is live) for the duration of `read`, which gets the path of a node
  // of the metadata device to hand to thin-provisioning-tools.
  Status WithMetadataSnap(const std::function<Status(const std::string& meta)>& read) {
    // The pool holds at most one metadata snapshot; these calls take turns.
    std::lock_guard<std::mutex> snap_lock(meta_snap_mu_);
    DevNode node;
    THINSNAP_RETURN_IF_ERROR(FindMetadataDevice(node));
    return WithMetadataSnapLocked(node.path(), read);
  }
  // The same, with meta_snap_mu_ held by the caller and the metadata device
  // at `meta`.
  Status WithMetadataSnapLocked(const std::string& meta,
                                const std::function<Status(const std::string& meta)>& read) {
    THINSNAP_RETURN_IF_ERROR(ReserveMetadataSnap());
    Status st = read(meta);
    Status released;
    {
      std::lock_guard<std::mutex> lock(msg_mu_);
      released = dm::SendReleaseMetadataSnap(name_);
    }
    return st.ok() ? released : st;
  }

  // Runs one of thin-provisioning-tools' readers; its stdout, or Internal
  // with its stderr if it fails.
  static Result<std::string> RunThinTool(const std::vector<std::string>& argv) {
    RunOptions run_options;
    run_options.timeout = kThinToolTimeout;
    auto out = RunCommand(argv, run_options);
    if (!out.ok()) return out.status().Annotate(argv[0]);
    if (out->exit_code != 0) {
      return Status::Internal(argv[0] + " exited " + std::to_string(out->exit_code) + ": " +
                              out->err);
    }
    return std::move(out->out);
  }

  // Runs thin_ls on a held metadata snapshot and returns its numeric
  // columns, one row per thin id.
  Result<std::vector<std::vector<uint64_t>>> ThinLs(const std::vector<std::string>& columns) {
    std::string fields;
    for (const std::string& c : columns) fields += (fields.empty() ? "" : ",") + c;
    Result<std::string> out = std::string();
    THINSNAP_RETURN_IF_ERROR(WithMetadataSnap([&](const std::string& meta) {
      out = RunThinTool({"thin_ls", "--metadata-snap", "--no-headers", "-o", fields, meta});
      return out.status();
    }));
    std::vector<std::vector<uint64_t>> rows;
    size_t pos = 0;
    const std::string& text = *out;
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

  // `name` exists already: a retry, a concurrent activation of the same id,
  // or an activation that a crash cut short, which is completed (Revive);
  // FailedPrecondition if it is active with another table or access.
  Status CompleteActivation(const std::string& name, const dm::Target& want, bool read_only) {
    auto info = dm::GetInfo(name);
    if (!info.ok()) return info.status();
    if (!info->exists) return Status::Unavailable(name + " was removed while being activated");
    if (info->live_table) {
      auto table = dm::GetTable(name);
      if (!table.ok()) return table.status();
      if (table->size() != 1 || table->front().ToString() != want.ToString() ||
          info->read_only != read_only) {
        return Status::FailedPrecondition(name + " is active with a different table or access");
      }
    }
    return Revive(name, {want}, read_only, *info);
  }

  // Makes usable a device `info` describes, which a kill may have left
  // half-made: created without a live table (loads `table`), suspended (a
  // device left suspended would hang I/O), or without its node (killed
  // between an ioctl and the mknod or node rename that follows it).
  static Status Revive(const std::string& name, const dm::Table& table, bool read_only,
                       const dm::DeviceInfo& info) {
    if (!info.live_table) {
      THINSNAP_RETURN_IF_ERROR(dm::Reload(name, table, read_only));
      return dm::Resume(name);
    }
    if (info.suspended) return dm::Resume(name);
    return dm::EnsureNode(name, info.dev);
  }

  const std::string name_;
  const dm::DevNum dev_;
  const uint64_t block_bytes_;
  const bool discards_reach_data_;

  // Serialises pool messages. The kernel would run them side by side, but
  // each commits the pool's metadata holding its metadata lock, which every
  // thin activation takes too: measured in the VM, 16 parallel Prepares with
  // concurrent messages had slower activations (15.3 ms mean against 11.9)
  // and no faster wall time. Two creates of one id before a commit would also
  // corrupt the pool (tests/vm/dm_stress.cc).
  std::mutex msg_mu_;

  // QueryStatus readings, shared by concurrent callers.
  std::mutex status_mu_;
  std::condition_variable status_cv_;
  uint64_t status_started_ = 0;  // readings started
  uint64_t status_done_ = 0;     // number of the reading in status_last_
  bool status_in_flight_ = false;
  Result<PoolStatus> status_last_ = Status::Unavailable("no pool status read yet");
  std::mutex meta_snap_mu_;  // one metadata snapshot at a time (ListThinIds)

  // A live origin's suspend, create_snap and resume take turns with any
  // other CreateSnap of it.
  ThinIdLocks origin_locks_;
};

}  // namespace

Result<std::unique_ptr<ThinPool>> OpenDmPool(const std::string& pool_name) {
  THINSNAP_RETURN_IF_ERROR(dm::ValidateName(pool_name));
  if (pool_name.size() + sizeof(kReclaimInfix) - 1 + kMaxIdDigits > dm::kMaxNameLength) {
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
  auto pool_status = ReadPoolStatus(pool_name);
  if (!pool_status.ok()) return pool_status.status();
  // The kernel turns passdown off by itself when the data device cannot
  // discard; the status says what is in force, the table only what was asked.
  const bool discards_reach_data =
      !pool_status->failed && pool_status->discard == dm::DiscardMode::kPassdown;
  return std::unique_ptr<ThinPool>(std::make_unique<DmPool>(
      pool_name, info->dev, parsed->block_sectors * 512, discards_reach_data));
}

}  // namespace thinsnap
