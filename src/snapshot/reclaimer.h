// Reclaimer: takes removed snapshots' thin devices out of the pool, off the
// request path, and gives their space back on the way.
//
// Remove only records a delete intent (one SQLite transaction) and wakes the
// reclaimer. A pass then takes every delete intent in the store, in batches:
//   1. deactivates each device, but never one that is open: a VM that
//      hot-plugged it, or anyone else, keeps it with its data intact, and a
//      later pass (one every kBusyRetryInterval while any is left) retries;
//   2. finds the blocks each device wrote itself (not those it shares with
//      the device it was snapshotted from) from one metadata snapshot per
//      batch; a view, or a device that never wrote, has none;
//   3. discards only those, through a private activation nobody else can
//      open, so they return to the data device (on a loop-backed pool the
//      data file really shrinks, containerd issue 5691); shared blocks are
//      never walked, and nothing is discarded when the pool could not pass it
//      down anyway;
//   4. deletes the thin id, then drops the intents and hands the ids back.
// A crash anywhere leaves the intent, which the next pass (or the reconciler
// at start-up, through ReclaimThins) finishes; each step is idempotent.
//
// Only the worker thread and Close() run passes, one at a time; Cleanup and
// a Prepare short of space wait for a pass that began after they asked.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "fs/filesystem.h"
#include "metadata/store.h"
#include "pool/pool.h"

namespace thinsnap {

struct ReclaimOptions {
  // Discard a device's own blocks before deleting it (discard_unused_blocks).
  // Off for pools on storage that mishandles discards.
  bool discard = true;
  // Virtual size of the private activation a discard works on: at least the
  // largest size any snapshot may have. Only the device's own ranges are
  // discarded, so a generous span costs nothing.
  uint64_t span_bytes = 1ull << 40;
  // Devices worked on at once within a batch. Under 16 clients of churn, 4
  // (each discard waiting ~330 ms on the pool's worker) drained about as
  // fast as devices were removed, so the backlog grew to ~190; 8 keeps it
  // under 40 (churn_vm).
  size_t parallel = 8;
};

// One thin id to take out of the pool for good.
struct ReclaimTarget {
  ThinId id = 0;
  // False for a device that cannot have written anything: nothing to discard.
  bool may_own_blocks = true;
};
ReclaimTarget TargetOf(const Intent& intent);

// Deletes `id` from the pool; an id that is already gone is not an error: the
// goal is reached (a delete may be retried after a crash).
Status DeleteIfPresent(ThinPool& pool, ThinId id);

// Takes `targets` out of the pool: deactivate, discard (if enabled), delete;
// one status per target. A missing id is not an error. A device that is open
// is left untouched and its status is Unavailable.
std::vector<Status> ReclaimThins(ThinPool& pool, const std::vector<ReclaimTarget>& targets,
                                 const ReclaimOptions& options);

// Discards what the unmounted filesystem on active device `id` does not use
// (free blocks, an idle journal), so a committed layer keeps only blocks that
// hold data: the journal alone is otherwise one more copy per layer. Unavailable
// if the device is mounted; nothing is discarded then. A filesystem untouched
// since the snapshot's creation (`created_ns`) is left alone: see UnusedRanges.
Status TrimUnused(ThinPool& pool, Filesystem& fs, ThinId id, int64_t created_ns);

// What one pass did.
struct ReclaimPass {
  int reclaimed = 0;
  int left = 0;          // delete intents still pending when it ended
  std::string left_why;  // the first reason one was left, if any
  double seconds = 0;
};

class Reclaimer {
 public:
  // While devices are left (open), passes repeat this often.
  static constexpr std::chrono::seconds kBusyRetryInterval{5};
  // Delete intents per metadata snapshot.
  static constexpr size_t kBatch = 64;

  // `released` is told each thin id once it is gone from the pool; `on_pass`
  // of every pass's outcome (for metrics). Either may be empty.
  Reclaimer(Store& store, ThinPool& pool, ReclaimOptions options,
            std::function<void(ThinId)> released, std::function<void(const ReclaimPass&)> on_pass);
  // Stops the background worker after the pass it is in.
  ~Reclaimer();

  Reclaimer(const Reclaimer&) = delete;
  Reclaimer& operator=(const Reclaimer&) = delete;

  // Starts the background worker; Wake() then schedules a pass on it.
  void Start();
  void Wake();
  // Wakes the worker and waits until a pass that began after this call has
  // ended (a pass already running is not enough: it may have missed the
  // latest removals), or until `deadline`. OK if that pass left nothing;
  // FailedPrecondition naming how many devices are left and why (e.g. still
  // open); Unavailable if the deadline came first (the pass goes on).
  Status AwaitPass(std::chrono::steady_clock::time_point deadline);
  // Runs a pass in the caller's thread (shutdown, after the worker stopped).
  Result<ReclaimPass> RunPass();

 private:
  void Work();

  Store& store_;
  ThinPool& pool_;
  const ReclaimOptions options_;
  const std::function<void(ThinId)> released_;
  const std::function<void(const ReclaimPass&)> on_pass_;

  std::mutex pass_mu_;  // one pass at a time

  std::mutex mu_;  // guards everything below
  std::condition_variable wake_cv_;
  std::condition_variable done_cv_;
  bool wanted_ = false;
  bool stopping_ = false;
  uint64_t passes_started_ = 0;
  uint64_t passes_done_ = 0;
  Result<ReclaimPass> last_pass_ = ReclaimPass{};
  std::thread worker_;
};

}  // namespace thinsnap
