// ThinIdLocks: work on one thin id takes turns; work on different ids never
// waits for each other, and no lock is held across the work itself.
#pragma once

#include <condition_variable>
#include <mutex>
#include <set>

#include "pool/pool.h"

namespace thinsnap {

class ThinIdLocks {
 public:
  // Once constructed, the only Hold on `id` in `locks` until destroyed.
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
