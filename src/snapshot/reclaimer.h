// Reclaimer: takes removed snapshots' thin devices out of the pool, off the
// request path, and gives their space back on the way.
//
// Remove only records a delete intent (one SQLite transaction) and wakes the
// reclaimer. For every delete intent in the store, a pass then:
//   1. discards everything the device maps (unless discards are off), so the
//      blocks it alone mapped return to the data device: on a loop-backed pool
//      the data file really shrinks (containerd issue 5691);
//   2. deactivates it and deletes the thin id;
//   3. drops the intent and hands the id back to the allocator.
// A crash anywhere leaves the intent, which the next pass or the reconciler
// at start-up finishes (both through ReclaimThin). A device still open (a
// removed snapshot someone has mounted) is left for a later pass.
//
// Passes take turns and read the intent log afresh, so an intent is never
// worked on twice at once; nothing a request waits for is held meanwhile.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "base/status.h"
#include "fs/filesystem.h"
#include "metadata/store.h"
#include "pool/pool.h"
#include "snapshot/thin_ids.h"

namespace thinsnap {

struct ReclaimOptions {
  // Discard a device's blocks before deleting it (discard_unused_blocks). Off
  // for pools on storage that mishandles discards.
  bool discard = true;
  // Virtual size to activate an inactive device with for its discard: at
  // least the largest size any snapshot may have. Only the part up to the
  // device's highest mapping is discarded, so a generous span costs nothing.
  uint64_t span_bytes = 1ull << 40;
};

// Deletes `id` from the pool; an id that is already gone is not an error: the
// goal is reached (a delete may be retried after a crash).
Status DeleteIfPresent(ThinPool& pool, ThinId id);

// Removes `id` from the pool for good: discard (if enabled), deactivate,
// delete. A missing id is not an error.
Status ReclaimThin(ThinPool& pool, ThinId id, const ReclaimOptions& options);

// Discards what the unmounted filesystem on active device `id` does not use
// (free blocks, an idle journal), so a committed layer keeps only blocks that
// hold data: the journal alone is otherwise one more copy per layer. Unavailable
// if the device is mounted; nothing is discarded then. A filesystem untouched
// since the snapshot's creation (`created_ns`) is left alone: see UnusedRanges.
Status TrimUnused(ThinPool& pool, Filesystem& fs, ThinId id, int64_t created_ns);

class Reclaimer {
 public:
  // `released` is told each thin id once it is gone from the pool.
  Reclaimer(Store& store, ThinPool& pool, ThinIdLocks& locks, ReclaimOptions options,
            std::function<void(ThinId)> released);
  // Stops the background worker after the pass it is in.
  ~Reclaimer();

  Reclaimer(const Reclaimer&) = delete;
  Reclaimer& operator=(const Reclaimer&) = delete;

  // Starts the background worker; Wake() then schedules a pass on it.
  void Start();
  void Wake();
  // Runs a pass in the caller's thread. Returns how many delete intents are
  // left (devices still open), or the first store error.
  Result<int> RunPass();

 private:
  void Work();

  Store& store_;
  ThinPool& pool_;
  ThinIdLocks& locks_;
  const ReclaimOptions options_;
  const std::function<void(ThinId)> released_;

  std::mutex pass_mu_;  // one pass at a time

  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool wanted_ = false;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace thinsnap
