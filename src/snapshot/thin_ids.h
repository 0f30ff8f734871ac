// Thin-id bookkeeping: allocation of 24-bit ids, and per-id locks.
#pragma once

#include <condition_variable>
#include <mutex>
#include <set>
#include <vector>

#include "base/status.h"
#include "pool/pool.h"

namespace thinsnap {

// Hands out the lowest free thin id. Ids are reused once released; an id
// stays reserved while anything (a snapshot, an intent) still refers to it.
class ThinIdAllocator {
 public:
  void Reserve(const std::vector<ThinId>& ids);
  // ResourceExhausted when all 2^24 ids are taken.
  Result<ThinId> Allocate();
  void Release(ThinId id);

 private:
  std::mutex mu_;
  std::set<ThinId> used_;
};

// Serialises operations on one existing device (Commit vs Remove vs Cleanup)
// without a global lock: different ids never wait for each other.
class ThinIdLocks {
 public:
  class Hold {
   public:
    Hold(ThinIdLocks& locks, ThinId id);
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    ThinIdLocks& locks_;
    ThinId id_;
  };

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<ThinId> held_;
};

}  // namespace thinsnap
