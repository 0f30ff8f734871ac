// GrownOrigins: the devices that sized Prepares and Views snapshot.
//
// A snapshot whose containerd.io/snapshot/max-size label asks for more than
// its origin's size needs its filesystem grown, and resize2fs costs about ten
// plain Prepares. Kata asks for the same size for every pod of an image, so
// the grow is done once per (origin, size): a thin snapshot of the origin,
// grown and left inactive, which every such Prepare or View then snapshots
// instead of the origin. The snapshot inherits the grown filesystem and
// costs what a plain one does.
//
// dm-thin shares blocks between a device and its snapshots by reference
// count, so deleting a grown origin never touches a snapshot taken of it:
// the set is a cache. An entry lives until its origin is removed (Store::
// BeginRemove retires it with the snapshot) or until it is the least recently
// used of more than `capacity`, which bounds the space the set holds (the
// grow's own writes: group descriptors, bitmaps and backup superblocks).
//
// Crash safety: a build is recorded as a create intent first and as a row
// only once its device is grown and inactive; a crash in between leaves the
// intent, which the reconciler undoes. A retired entry becomes a delete
// intent for the reclaimer, in the same transaction that drops its row.
//
// Thread safety: all methods may be called concurrently. Builds of different
// (origin, size) pairs run in parallel; callers asking for the same pair wait
// for one build. No lock is held across device I/O but the pair's own.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "base/status.h"
#include "fs/filesystem.h"
#include "metadata/store.h"
#include "pool/pool.h"
#include "snapshot/thin_ids.h"

namespace thinsnap {

class GrownOrigins {
 public:
  // `on_retired` is called after entries were turned into delete intents
  // (to wake the reclaimer); it may be empty.
  GrownOrigins(Store& store, ThinPool& pool, Filesystem& fs, ThinIdAllocator& ids, size_t capacity,
               std::function<void()> on_retired);
  GrownOrigins(const GrownOrigins&) = delete;
  GrownOrigins& operator=(const GrownOrigins&) = delete;

  // Takes the entries recorded in the store (after reconciliation).
  Status Load();

  // Runs `fn` with the thin id of an inactive device holding `origin`'s
  // filesystem (`origin_bytes` large) grown to `size_bytes`, building it
  // first if there is none. The device is not retired while `fn` runs.
  Status WithGrown(ThinId origin, uint64_t origin_bytes, uint64_t size_bytes,
                   const std::function<Status(ThinId)>& fn);

  // Forgets `origin`'s entries, which the store retired with their origin.
  void ForgetOrigin(ThinId origin);

 private:
  using Key = std::pair<ThinId, uint64_t>;  // origin, size
  struct Entry {
    std::mutex build_mu;  // held by the one build of this key
    bool ready = false;   // guarded by build_mu and mu_ (set under both)
    ThinId thin_id = 0;
    int users = 0;  // callers between lookup and return; guarded by mu_
    uint64_t last_used = 0;
  };

  Result<ThinId> Build(ThinId origin, uint64_t origin_bytes, uint64_t size_bytes);
  void Release(const Key& key, const std::shared_ptr<Entry>& entry);
  void RetireBeyondCapacity();

  Store& store_;
  ThinPool& pool_;
  Filesystem& fs_;
  ThinIdAllocator& ids_;
  const size_t capacity_;
  const std::function<void()> on_retired_;

  std::mutex mu_;
  std::map<Key, std::shared_ptr<Entry>> entries_;
  uint64_t clock_ = 0;  // use counter for least-recently-used
};

}  // namespace thinsnap
