#include "snapshot/snapshotter.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>

#include "base/failpoint.h"
#include "metadata/filter.h"
#include "pool/thin_id_locks.h"
#include "snapshot/grown_origins.h"
#include "snapshot/reclaimer.h"
#include "snapshot/reconciler.h"
#include "snapshot/size_label.h"
#include "snapshot/thin_ids.h"

namespace thinsnap {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How long a Prepare short of space waits for the reclaimer to give space back.
constexpr std::chrono::seconds kSpaceReclaimWait{2};

double FreePercent(uint64_t used, uint64_t total) {
  return total == 0 ? 0.0 : 100.0 * static_cast<double>(total - used) / static_cast<double>(total);
}

}  // namespace

struct Snapshotter::Impl {
  Impl(std::unique_ptr<Store> s, std::unique_ptr<ThinPool> p, std::unique_ptr<Filesystem> f,
       SnapshotterOptions o)
      : store(std::move(s)),
        pool(std::move(p)),
        fs(std::move(f)),
        opts(o),
        reclaimer(
            *store, *pool, ReclaimOptionsOf(o), [this](ThinId id) { ids.Release(id); },
            o.on_reclaim_pass),
        grown(*store, *pool, *fs, ids, o.grown_origin_capacity, [this] { reclaimer.Wake(); }),
        autoextender(*pool, o.autoextend) {}

  static ReclaimOptions ReclaimOptionsOf(const SnapshotterOptions& o) {
    return {o.discard_unused_blocks, std::max(o.base_size_bytes, o.max_snapshot_size_bytes)};
  }

  // Counts a call in flight; Close() waits for them. Unavailable once closed.
  class CallGuard {
   public:
    explicit CallGuard(Impl& impl) : impl_(impl) {
      std::lock_guard lock(impl_.life_mu);
      admitted_ = !impl_.closed;
      if (admitted_) ++impl_.in_flight;
    }
    ~CallGuard() {
      if (!admitted_) return;
      std::lock_guard lock(impl_.life_mu);
      if (--impl_.in_flight == 0) impl_.life_cv.notify_all();
    }
    Status status() const {
      return admitted_ ? Status::Ok() : Status::Unavailable("snapshotter is closed");
    }

   private:
    Impl& impl_;
    bool admitted_;
  };

  Status CheckFreeSpace();
  Status EnsureBase();
  Result<std::vector<Mount>> Create(Kind kind, const std::string& key, const std::string& parent,
                                    const Labels& labels);
  std::vector<Mount> MountsFor(const SnapshotRecord& r) const;
  Result<CommitUsage> MeasureUsage(const SnapshotRecord& r);

  std::unique_ptr<Store> store;
  std::unique_ptr<ThinPool> pool;
  std::unique_ptr<Filesystem> fs;
  const SnapshotterOptions opts;
  ThinIdAllocator ids;
  ThinIdLocks id_locks;  // Commit, Remove and Cleanup of one device take turns
  BaseDevice base;
  StartupReconcile startup;
  std::mutex update_mu;  // serialises label read-modify-write
  // Declared after everything they use, so they stop before those go.
  Reclaimer reclaimer;
  GrownOrigins grown;
  PoolAutoextender autoextender;

  std::mutex life_mu;
  std::condition_variable life_cv;
  int in_flight = 0;
  bool closed = false;
};

Status Snapshotter::Impl::CheckFreeSpace() {
  auto st = pool->QueryStatus();
  if (!st.ok()) return st.status().Annotate("pool status");
  if (st->failed || st->read_only || st->needs_check) {
    return Status::Unavailable("pool " + pool->name() +
                               " is failed or read-only; run `thinsnapctl check`");
  }
  const double data_free = FreePercent(st->data_used_blocks, st->data_total_blocks);
  const double meta_free = FreePercent(st->meta_used_blocks, st->meta_total_blocks);
  if (st->out_of_data_space || data_free < opts.min_free_space_percent) {
    return Status::ResourceExhausted(
        fmt::format("pool {} has {:.1f}% free data space, below the {:.1f}% minimum", pool->name(),
                    data_free, opts.min_free_space_percent));
  }
  if (meta_free < opts.min_free_space_percent) {
    return Status::ResourceExhausted(
        fmt::format("pool {} has {:.1f}% free metadata space, below the {:.1f}% minimum",
                    pool->name(), meta_free, opts.min_free_space_percent));
  }
  return Status::Ok();
}

// Creates and formats the pool's base device once; every root snapshot is a
// thin snapshot of it, so mkfs never runs per layer.
Status Snapshotter::Impl::EnsureBase() {
  auto existing = store->GetBase();
  if (!existing.ok()) return existing.status();
  if (*existing) {
    base = **existing;
    if (base.size_bytes != opts.base_size_bytes || base.fs_type != fs->type()) {
      spdlog::warn("base device was created as {} bytes of {}; keeping it (configured: {} of {})",
                   base.size_bytes, base.fs_type, opts.base_size_bytes, fs->type());
    }
    return Status::Ok();
  }
  auto id = ids.Allocate();
  if (!id.ok()) return id.status();
  auto intent = store->BeginCreateDevice(*id);
  if (!intent.ok()) return intent.status();
  BaseDevice fresh{*id, opts.base_size_bytes, fs->type()};
  spdlog::info("creating base device (thin id {}, {} bytes, {})", *id, fresh.size_bytes,
               fresh.fs_type);
  THINSNAP_FAILPOINT("base.after_intent");
  THINSNAP_RETURN_IF_ERROR(pool->CreateThin(*id).Annotate("create base device"));
  THINSNAP_FAILPOINT("base.after_create");
  THINSNAP_RETURN_IF_ERROR(pool->Activate(*id, fresh.size_bytes, Access::kReadWrite));
  Status formatted = fs->Format(pool->DevicePath(*id));
  if (formatted.ok()) formatted = failpoint::Hit("base.after_format");
  Status deactivated = pool->Deactivate(*id);
  THINSNAP_RETURN_IF_ERROR(formatted.Annotate("format base device"));
  THINSNAP_RETURN_IF_ERROR(deactivated.Annotate("deactivate base device"));
  THINSNAP_RETURN_IF_ERROR(store->FinishCreateBase(*intent, fresh));
  base = fresh;
  return Status::Ok();
}

std::vector<Mount> Snapshotter::Impl::MountsFor(const SnapshotRecord& r) const {
  Mount m;
  m.type = fs->type();
  m.source = pool->DevicePath(r.thin_id);
  m.options = {r.info.kind == Kind::kView ? "ro" : "rw"};
  return {m};
}

Result<std::vector<Mount>> Snapshotter::Impl::Create(Kind kind, const std::string& key,
                                                     const std::string& parent,
                                                     const Labels& labels) {
  CallGuard guard(*this);
  THINSNAP_RETURN_IF_ERROR(guard.status());
  THINSNAP_RETURN_IF_ERROR(ValidateKey("key", key));
  if (!parent.empty()) THINSNAP_RETURN_IF_ERROR(ValidateKey("parent", parent));
  THINSNAP_RETURN_IF_ERROR(ValidateLabels(labels));
  auto requested = RequestedSize(labels, opts.max_snapshot_size_bytes);
  if (!requested.ok()) return requested.status();
  Status space = CheckFreeSpace();
  if (space.code() == Code::kResourceExhausted && !opts.async_remove) {
    // Removed snapshots may still hold the space on its way back through the
    // background reclaimer: give it a moment and look again, so that a
    // Remove followed by a Prepare on a full pool works as a user expects.
    // The wait is bounded: a Prepare never runs, nor waits out, a long pass.
    Status reclaimed = reclaimer.AwaitPass(std::chrono::steady_clock::now() + kSpaceReclaimWait);
    if (!reclaimed.ok()) spdlog::info("reclaim before prepare: {}", reclaimed.ToString());
    space = CheckFreeSpace();
  }
  THINSNAP_RETURN_IF_ERROR(space);

  auto id = ids.Allocate();
  if (!id.ok()) return id.status();
  NewSnapshot s{key, parent, kind, *id, std::max(*requested, base.size_bytes), labels, NowNs()};
  auto pending = store->BeginCreate(s);
  if (!pending.ok()) {
    ids.Release(*id);
    return pending.status();
  }
  const ThinId origin = pending->parent_thin_id.value_or(base.thin_id);
  const uint64_t origin_size =
      pending->parent_thin_id ? pending->parent_size_bytes : base.size_bytes;
  const bool grow = pending->size_bytes > origin_size;
  if (*requested != 0 && !grow) {
    spdlog::info("{} {}: {}={} is not above the parent's {} bytes; keeping that size", key,
                 kind == Kind::kView ? "view" : "prepare", kMaxSizeLabel, *requested, origin_size);
  }
  const Access access = kind == Kind::kView ? Access::kReadOnly : Access::kReadWrite;
  // Each step runs only if all before it succeeded; failpoints sit between
  // them so crash tests can stop the process at every instant.
  // A larger size is a snapshot of the origin grown to it once (grown_origins.h).
  auto snap = [&](ThinId from) { return pool->CreateSnap(*id, from); };
  Status st = failpoint::Hit("create.after_intent");
  if (st.ok())
    st = grow ? grown.WithGrown(origin, origin_size, pending->size_bytes, snap) : snap(origin);
  if (st.ok()) st = failpoint::Hit("create.after_snap");
  if (st.ok()) st = pool->Activate(*id, pending->size_bytes, access);
  if (st.ok()) st = failpoint::Hit("create.after_activate");
  if (st.ok()) st = store->FinishCreate(*pending);
  if (!st.ok()) {
    // Undo in reverse order. If the pool refuses (e.g. the device is busy),
    // the key is still released and the thin id handed to a delete intent,
    // which Cleanup retries; the id stays reserved until then.
    Status undo = pool->DeactivateForDelete(*id);
    if (undo.ok()) undo = DeleteIfPresent(*pool, *id);
    Status forgot = store->AbortCreate(*pending);
    if (undo.ok() && forgot.ok()) {
      ids.Release(*id);
    } else if (forgot.ok()) {
      spdlog::warn("rollback of {}: thin id {} left for cleanup: {}", key, *id, undo.ToString());
      auto later = store->RecordDelete(*id);
      if (!later.ok())
        spdlog::warn("record delete of thin id {}: {}", *id, later.status().ToString());
    } else {
      // The metadata is unreachable too: the next start's reconciler undoes
      // the create from its intent.
      spdlog::error("rollback of {} incomplete: {}", key, forgot.ToString());
    }
    return st.Annotate(std::string(kind == Kind::kView ? "view " : "prepare ") + key);
  }
  SnapshotRecord r;
  r.thin_id = *id;
  r.info.kind = kind;
  return MountsFor(r);
}

// Reads an active device's usage: the bytes it maps beyond what its parent
// mapped when committed, and the inodes its filesystem uses.
Result<CommitUsage> Snapshotter::Impl::MeasureUsage(const SnapshotRecord& r) {
  auto mapped = pool->MappedBytes(r.thin_id);
  if (!mapped.ok()) return mapped.status().Annotate("usage of " + r.info.name);
  uint64_t parent_mapped = 0;
  if (!r.info.parent.empty()) {
    auto parent = store->Get(r.info.parent);
    if (parent.ok()) parent_mapped = parent->mapped_bytes;
  }
  auto inodes = fs->InodesUsed(pool->DevicePath(r.thin_id));
  if (!inodes.ok()) return inodes.status().Annotate("inodes of " + r.info.name);
  const uint64_t own = *mapped > parent_mapped ? *mapped - parent_mapped : 0;
  return CommitUsage{*mapped, static_cast<int64_t>(own), *inodes};
}

Result<std::unique_ptr<Snapshotter>> Snapshotter::Open(std::unique_ptr<Store> store,
                                                       std::unique_ptr<ThinPool> pool,
                                                       std::unique_ptr<Filesystem> fs,
                                                       SnapshotterOptions options) {
  auto impl = std::make_unique<Impl>(std::move(store), std::move(pool), std::move(fs), options);
  auto status = impl->pool->QueryStatus();
  if (!status.ok()) return status.status().Annotate("pool " + impl->pool->name());
  if (status->failed || status->needs_check || status->read_only) {
    return Status::FailedPrecondition(
        "pool " + impl->pool->name() + " is " +
        (status->failed        ? "failed"
         : status->needs_check ? "flagged needs_check"
                               : "read-only") +
        "; repair it (thin_check/thin_repair) before starting thinsnap");
  }

  Reconciler reconciler(*impl->store, *impl->pool, Impl::ReclaimOptionsOf(options));
  const auto reconcile_start = std::chrono::steady_clock::now();
  auto report = reconciler.Run(/*repair=*/true);
  if (!report.ok()) return report.status().Annotate("reconcile");
  impl->startup = {
      *report,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - reconcile_start).count()};
  if (report->clean()) {
    spdlog::info("reconcile: {}", report->Summary());
  } else {
    spdlog::warn("reconcile repaired: {}", report->Summary());
  }
  if (!report->lost.empty()) {
    return Status::FailedPrecondition(
        std::to_string(report->lost.size()) + " snapshot(s), first " + report->lost.front() +
        ", have no thin device in pool " + impl->pool->name() +
        "; was the pool recreated? `thinsnapctl check --repair` drops them");
  }
  auto in_use = impl->store->ThinIdsInUse();
  if (!in_use.ok()) return in_use.status();
  impl->ids.Reserve(*in_use);
  auto cursor = impl->store->ThinIdCursor();
  if (!cursor.ok()) return cursor.status();
  impl->ids.SetCursor(*cursor);
  THINSNAP_RETURN_IF_ERROR(impl->EnsureBase());
  THINSNAP_RETURN_IF_ERROR(impl->grown.Load());
  impl->reclaimer.Start();
  impl->autoextender.Start();
  return std::unique_ptr<Snapshotter>(new Snapshotter(std::move(impl)));
}

Snapshotter::Snapshotter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

const Snapshotter::StartupReconcile& Snapshotter::startup_reconcile() const {
  return impl_->startup;
}

Snapshotter::~Snapshotter() { Close(); }

Result<std::vector<Mount>> Snapshotter::Prepare(const std::string& key, const std::string& parent,
                                                const Labels& labels) {
  return impl_->Create(Kind::kActive, key, parent, labels);
}

Result<std::vector<Mount>> Snapshotter::View(const std::string& key, const std::string& parent,
                                             const Labels& labels) {
  return impl_->Create(Kind::kView, key, parent, labels);
}

Result<std::vector<Mount>> Snapshotter::Mounts(const std::string& key) {
  Impl::CallGuard guard(*impl_);
  THINSNAP_RETURN_IF_ERROR(guard.status());
  THINSNAP_RETURN_IF_ERROR(ValidateKey("key", key));
  auto r = impl_->store->Get(key);
  if (!r.ok()) return r.status();
  if (r->info.kind == Kind::kCommitted) {
    return Status::FailedPrecondition("snapshot " + key + " is committed; it has no mounts");
  }
  return impl_->MountsFor(*r);
}

Status Snapshotter::Commit(const std::string& name, const std::string& key, const Labels& labels) {
  Impl::CallGuard guard(*impl_);
  THINSNAP_RETURN_IF_ERROR(guard.status());
  THINSNAP_RETURN_IF_ERROR(ValidateKey("name", name));
  THINSNAP_RETURN_IF_ERROR(ValidateKey("key", key));
  THINSNAP_RETURN_IF_ERROR(ValidateLabels(labels));
  auto r = impl_->store->Get(key);
  if (!r.ok()) return r.status();
  ThinIdLocks::Hold hold(impl_->id_locks, r->thin_id);
  r = impl_->store->Get(key);  // re-read under the id lock: a racing Commit may have won
  if (!r.ok()) return r.status();
  if (r->info.kind != Kind::kActive) {
    return Status::FailedPrecondition("snapshot " + key + " is not active");
  }
  if (impl_->store->Get(name).ok())
    return Status::AlreadyExists("snapshot " + name + " already exists");

  ThinPool& pool = *impl_->pool;
  if (impl_->opts.discard_unused_blocks) {
    // Still mounted (deferred removal below): nothing is trimmed.
    Status trimmed = TrimUnused(pool, *impl_->fs, r->thin_id, r->info.created_ns);
    if (!trimmed.ok()) spdlog::info("commit {}: unused blocks kept: {}", key, trimmed.ToString());
  }
  // Measure while the device is still active and quiescent.
  auto usage = impl_->MeasureUsage(*r);
  if (!usage.ok()) return usage.status();

  THINSNAP_FAILPOINT("commit.before_deactivate");
  Status st = pool.Deactivate(r->thin_id);
  if (st.code() == Code::kUnavailable) {
    // Still open (mounted): the kernel removes it when the last user closes
    // it, which also flushes it. The layer is immutable from here on.
    spdlog::warn("commit {}: device still open, deferred removal scheduled", key);
  } else if (!st.ok()) {
    return st.Annotate("deactivate " + key);
  }
  THINSNAP_FAILPOINT("commit.after_deactivate");
  st = impl_->store->Commit(key, name, labels, *usage, NowNs());
  if (!st.ok()) {
    // The snapshot is still active in the metadata: give its device back.
    Status again = pool.Activate(r->thin_id, r->size_bytes, Access::kReadWrite);
    if (!again.ok()) spdlog::warn("reactivate {} after failed commit: {}", key, again.ToString());
  }
  return st;
}

Status Snapshotter::Remove(const std::string& key) {
  Impl::CallGuard guard(*impl_);
  THINSNAP_RETURN_IF_ERROR(guard.status());
  THINSNAP_RETURN_IF_ERROR(ValidateKey("key", key));
  auto r = impl_->store->Get(key);
  if (!r.ok()) return r.status();
  // Not while a Commit of the same snapshot is between its steps.
  ThinIdLocks::Hold hold(impl_->id_locks, r->thin_id);
  auto intent = impl_->store->BeginRemove(key);
  if (!intent.ok()) return intent.status();
  impl_->grown.ForgetOrigin(r->thin_id);  // retired with it
  THINSNAP_FAILPOINT("remove.after_intent");
  // The snapshot is gone from the metadata; the reclaimer takes its device
  // out of the pool in the background, and a busy or failing device never
  // fails the Remove (containerd's GC must not stall). With async_remove the
  // device waits for the next Cleanup.
  if (!impl_->opts.async_remove) impl_->reclaimer.Wake();
  return Status::Ok();
}

Result<Info> Snapshotter::Stat(const std::string& key) {
  Impl::CallGuard guard(*impl_);
  THINSNAP_RETURN_IF_ERROR(guard.status());
  THINSNAP_RETURN_IF_ERROR(ValidateKey("key", key));
  auto r = impl_->store->Get(key);
  if (!r.ok()) return r.status();
  return r->info;
}

Result<Info> Snapshotter::Update(const Info& info, const std::vector<std::string>& field_paths) {
  Impl::CallGuard guard(*impl_);
  THINSNAP_RETURN_IF_ERROR(guard.status());
  THINSNAP_RETURN_IF_ERROR(ValidateKey("name", info.name));
  std::lock_guard lock(impl_->update_mu);
  auto r = impl_->store->Get(info.name);
  if (!r.ok()) return r.status();
  Labels labels = r->info.labels;
  if (field_paths.empty()) labels = info.labels;
  for (const std::string& path : field_paths) {
    if (path == "labels") {
      labels = info.labels;
    } else if (path.rfind("labels.", 0) == 0 && path.size() > 7) {
      const std::string label = path.substr(7);
      if (auto it = info.labels.find(label); it != info.labels.end()) {
        labels[label] = it->second;
      } else {
        labels.erase(label);
      }
    } else {
      return Status::InvalidArgument("cannot update field \"" + path + "\" of snapshot " +
                                     info.name + "; only labels are mutable");
    }
  }
  THINSNAP_RETURN_IF_ERROR(ValidateLabels(labels));
  auto updated = impl_->store->SetLabels(info.name, labels, NowNs());
  if (!updated.ok()) return updated.status();
  return updated->info;
}

Result<Usage> Snapshotter::GetUsage(const std::string& key) {
  Impl::CallGuard guard(*impl_);
  THINSNAP_RETURN_IF_ERROR(guard.status());
  THINSNAP_RETURN_IF_ERROR(ValidateKey("key", key));
  auto r = impl_->store->Get(key);
  if (!r.ok()) return r.status();
  if (r->info.kind == Kind::kCommitted) return Usage{r->usage_bytes, r->usage_inodes};
  auto usage = impl_->MeasureUsage(*r);
  if (!usage.ok()) return usage.status();
  return Usage{usage->usage_bytes, usage->usage_inodes};
}

Status Snapshotter::Walk(const std::vector<std::string>& filters,
                         const std::function<Status(const Info&)>& fn) {
  Impl::CallGuard guard(*impl_);
  THINSNAP_RETURN_IF_ERROR(guard.status());
  auto filter = Filter::Parse(filters);
  if (!filter.ok()) return filter.status();
  return impl_->store->ForEach(
      [&](const SnapshotRecord& r) { return filter->Matches(r.info) ? fn(r.info) : Status::Ok(); });
}

Status Snapshotter::Cleanup(std::chrono::steady_clock::time_point deadline) {
  Impl::CallGuard guard(*impl_);
  THINSNAP_RETURN_IF_ERROR(guard.status());
  return impl_->reclaimer.AwaitPass(deadline);
}

void Snapshotter::Close() {
  {
    std::unique_lock lock(impl_->life_mu);
    if (impl_->closed) return;
    impl_->closed = true;
    impl_->life_cv.wait(lock, [&] { return impl_->in_flight == 0; });
  }
  // Removals already answered leave the pool now, not at the next start: a
  // clean shutdown leaves no device of a removed snapshot behind.
  if (impl_->opts.async_remove) return;
  auto left = impl_->reclaimer.RunPass();
  if (!left.ok()) spdlog::warn("reclaim at shutdown: {}", left.status().ToString());
}

}  // namespace thinsnap
