// PoolTransactions: every change to the pool's metadata, counted.
//
// Each thin-id change (create_thin, create_snap, delete) is counted in the
// pool's transaction id by `set_transaction_id N N+k`. When a change returns,
// a set_transaction_id covering it has been sent, so whatever the caller does
// next (its metadata commit) comes after both.
//
// Concurrent changes share one set_transaction_id (group commit): a caller
// whose change is not yet counted and finds no set_transaction_id in flight
// becomes the leader; it waits for the changes already under way to finish,
// then counts all that succeeded. The others wait for it, or lead the next
// round if they started after it took over.
// The changes themselves are not serialised here (the pool serialises its
// messages), and nothing slow runs under the mutex.
//
// The transaction id is cached and re-read from the pool only when the kernel
// refuses the compare-and-set (EINVAL), e.g. after an administrator or LVM
// bumped it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

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
  // Runs `change`, then returns once a set_transaction_id covers it.
  template <typename Change>
  Status Apply(Change change);
  // Blocks until change number `seq` is counted, leading rounds as needed.
  void AwaitCounted(uint64_t seq);
  // Adds `count` to the pool's transaction id. Only the leader calls it.
  Status Bump(uint64_t count);

  ThinPool& pool_;

  std::mutex mu_;
  std::condition_variable counted_cv_;
  uint64_t started_ = 0;   // changes begun
  uint64_t settled_ = 0;   // changes that succeeded or failed
  uint64_t finished_ = 0;  // changes that succeeded (sequence numbers handed out)
  uint64_t counted_ = 0;   // changes a set_transaction_id was sent for
  bool leading_ = false;   // a leader is sending set_transaction_id

  // The pool's transaction id as last set or read; touched only by the leader.
  std::optional<uint64_t> tid_;
};

}  // namespace thinsnap
