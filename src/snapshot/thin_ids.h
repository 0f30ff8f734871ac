// Thin-id bookkeeping: allocation of 24-bit ids.
#pragma once

#include <map>
#include <mutex>
#include <vector>

#include "base/status.h"
#include "pool/pool.h"

namespace thinsnap {

// Hands out thin ids round-robin: the first free id at or after a cursor
// that only moves forward, wrapping at 2^24. A removed snapshot's id (and so
// its device name, which derives from the id) is therefore not handed out
// again until every other free id has been, so a Mounts answer read just
// before a Remove does not soon name another snapshot's device. An id stays
// reserved while anything (a snapshot, an intent) still refers to it.
// Every call is O(log r), r being the number of free runs: a pool of many
// thousands of snapshots must not pay for each one on every Prepare.
class ThinIdAllocator {
 public:
  ThinIdAllocator();
  // Reserving an id already taken is a no-op.
  void Reserve(const std::vector<ThinId>& ids);
  // Where allocation continues (after a restart: Store::ThinIdCursor).
  void SetCursor(ThinId next);
  // ResourceExhausted when all 2^24 ids are taken.
  Result<ThinId> Allocate();
  // Releasing an id that is already free is a no-op.
  void Release(ThinId id);

 private:
  std::mutex mu_;
  // The free ids as disjoint, non-adjacent runs: first id -> last id. Runs
  // rather than single ids, so that reserving a few high ids (a pool whose
  // ids came from elsewhere) costs a few entries, not one per gap below them.
  std::map<ThinId, ThinId> free_;
  ThinId cursor_ = 0;
};

}  // namespace thinsnap
