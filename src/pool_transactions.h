// PoolTransactions: every change to the pool's metadata, counted.
//
// Each thin-id change (create_thin, create_snap, delete) is followed, under
// one mutex, by `set_transaction_id N N+1`, so the pool's transaction id
// counts the changes thinsnap made. The mutex covers only those two short
// messages (the kernel serialises pool messages anyway); activation and
// everything slow happen outside it.
#pragma once

#include <cstdint>
#include <mutex>

#include "pool.h"

namespace thinsnap {

class PoolTransactions {
 public:
  explicit PoolTransactions(ThinPool& pool) : pool_(pool) {}

  Status CreateThin(ThinId id);
  Status CreateSnap(ThinId id, ThinId origin);
  // Deleting an id that does not exist is not an error: the goal is reached.
  Status Delete(ThinId id);

 private:
  // Runs `change` then bumps the transaction id, atomically w.r.t. callers.
  template <typename Change>
  Status Apply(Change change);

  ThinPool& pool_;
  std::mutex mu_;
};

}  // namespace thinsnap
