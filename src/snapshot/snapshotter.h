// Snapshotter: containerd's snapshot semantics over a ThinPool and a Store.
//
// Every snapshot is one thin device. Prepare/View snapshot the parent's thin
// id (or the pool's pre-formatted base device for a root snapshot); Commit
// deactivates the device and records it as immutable; Remove deletes it.
//
// Keys are global: containerd already prefixes them with its namespace.
// Keys are opaque bytes (1..4096, no NUL) and never reach a path or a device
// name: devices are named from thin ids.
//
// Errors follow containerd: NotFound, AlreadyExists, FailedPrecondition,
// InvalidArgument, ResourceExhausted (pool nearly full), Unavailable.
//
// Thread safety: all methods may be called concurrently. No lock is held
// across slow device I/O; independent Prepares proceed in parallel.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "fs/filesystem.h"
#include "metadata/snapshot_types.h"
#include "metadata/store.h"
#include "pool/autoextend.h"
#include "pool/pool.h"
#include "snapshot/reclaimer.h"
#include "snapshot/reconciler.h"

namespace thinsnap {

struct SnapshotterOptions {
  uint64_t base_size_bytes = 10ull << 30;  // virtual size of every thin device
  // Remove only forgets the snapshot; Cleanup (which containerd calls after
  // each garbage collection) deactivates and deletes its device.
  bool async_remove = false;
  // Prepare/View fail with ResourceExhausted when free data or metadata space
  // would drop below this percentage of the pool.
  double min_free_space_percent = 10.0;
  // Discard blocks no snapshot needs, so the space returns to the data
  // device: a removed snapshot's, and a committed layer's free blocks and
  // idle journal (reclaimer.h). Off for storage that mishandles discards.
  bool discard_unused_blocks = true;
  // Largest size a snapshot may have (its containerd.io/snapshot/max-size).
  uint64_t max_snapshot_size_bytes = 1ull << 40;
  // Origins grown to a max-size kept for reuse (grown_origins.h).
  size_t grown_origin_capacity = 16;
  // Growing a loop pool before it fills (off unless a threshold is set).
  AutoextendOptions autoextend;
  // Told of every reclaim pass's outcome (metrics); may be empty.
  std::function<void(const ReclaimPass&)> on_reclaim_pass;
};

class Snapshotter {
 public:
  // Opens the snapshotter; creates and formats the base device on first use.
  static Result<std::unique_ptr<Snapshotter>> Open(std::unique_ptr<Store> store,
                                                   std::unique_ptr<ThinPool> pool,
                                                   std::unique_ptr<Filesystem> fs,
                                                   SnapshotterOptions options);
  ~Snapshotter();

  Snapshotter(const Snapshotter&) = delete;
  Snapshotter& operator=(const Snapshotter&) = delete;

  Result<std::vector<Mount>> Prepare(const std::string& key, const std::string& parent,
                                     const Labels& labels);
  Result<std::vector<Mount>> View(const std::string& key, const std::string& parent,
                                  const Labels& labels);
  Result<std::vector<Mount>> Mounts(const std::string& key);
  Status Commit(const std::string& name, const std::string& key, const Labels& labels);
  Status Remove(const std::string& key);
  Result<Info> Stat(const std::string& key);
  // Updates labels only. `field_paths` may hold "labels" (replace all) and
  // "labels.<key>" (set or, if absent from `info`, delete one). Empty paths
  // mean "labels".
  Result<Info> Update(const Info& info, const std::vector<std::string>& field_paths);
  Result<Usage> GetUsage(const std::string& key);
  // Calls `fn` for every snapshot matching any of `filters` (containerd
  // filter syntax; empty = all). Stops early if `fn` returns non-OK.
  Status Walk(const std::vector<std::string>& filters,
              const std::function<Status(const Info&)>& fn);
  // Waits, at most until `deadline`, for a reclaim pass that began after
  // the call (Remove leaves reclaiming to a background worker, reclaimer.h),
  // and says whether it left removed snapshots' devices behind (still open:
  // FailedPrecondition) or could not finish in time (Unavailable).
  Status Cleanup(std::chrono::steady_clock::time_point deadline =
                     std::chrono::steady_clock::time_point::max());
  // Waits for in-flight operations, then finishes the removals already
  // answered (unless async_remove); later calls return Unavailable.
  void Close();

  // What the reconciliation in Open repaired and how long it took (for
  // monitoring; the summary is also logged).
  struct StartupReconcile {
    ReconcileReport report;
    double seconds = 0;
  };
  const StartupReconcile& startup_reconcile() const;

 private:
  struct Impl;
  explicit Snapshotter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace thinsnap
