#include "pool_transactions.h"

#include <spdlog/spdlog.h>

#include "base/failpoint.h"

namespace thinsnap {

template <typename Change>
Status PoolTransactions::Apply(Change change) {
  {
    std::lock_guard lock(mu_);
    ++started_;
  }
  Status st = change();
  if (st.ok()) st = failpoint::Hit("pool.before_set_transaction_id");
  uint64_t seq = 0;
  {
    std::lock_guard lock(mu_);
    ++settled_;
    if (st.ok()) seq = ++finished_;
  }
  counted_cv_.notify_all();  // a leader may be waiting for this change to settle
  if (!st.ok()) return st;
  AwaitCounted(seq);
  return Status::Ok();
}

void PoolTransactions::AwaitCounted(uint64_t seq) {
  std::unique_lock lock(mu_);
  while (counted_ < seq) {
    if (leading_) {
      counted_cv_.wait(lock);
      continue;
    }
    leading_ = true;
    // Changes already under way will want counting too; they are queued
    // behind the same pool lock, so waiting for them costs the leader little
    // and saves a set_transaction_id (a metadata commit) for each. Changes
    // started from here on wait for the next round, so this wait is bounded.
    const uint64_t under_way = started_;
    counted_cv_.wait(lock, [&] { return settled_ >= under_way; });
    const uint64_t upto = finished_;
    const uint64_t count = upto - counted_;
    lock.unlock();
    Status st = Bump(count);
    if (!st.ok()) {
      // The changes themselves are durable; a missed count is harmless because
      // reconciliation compares thin ids, not counts.
      spdlog::warn("counting {} pool change(s) in the transaction id failed: {}", count,
                   st.ToString());
    }
    lock.lock();
    counted_ = upto;
    leading_ = false;
    counted_cv_.notify_all();
  }
}

Status PoolTransactions::Bump(uint64_t count) {
  for (int attempt = 0;; ++attempt) {
    if (!tid_) {
      auto status = pool_.QueryStatus();
      if (!status.ok()) return status.status().Annotate("read transaction id");
      tid_ = status->transaction_id;
    }
    Status st = pool_.SetTransactionId(*tid_, *tid_ + count);
    if (st.ok()) {
      *tid_ += count;
      return st;
    }
    // Whatever went wrong, the cached id is no longer to be trusted.
    tid_.reset();
    // EINVAL: someone else moved the id; re-read it once and retry.
    if (st.code() != Code::kInvalidArgument || attempt > 0) return st;
  }
}

Status PoolTransactions::CreateThin(ThinId id) {
  return Apply([&] { return pool_.CreateThin(id); });
}

Status PoolTransactions::CreateSnap(ThinId id, ThinId origin) {
  return Apply([&] { return pool_.CreateSnap(id, origin); });
}

Status PoolTransactions::Delete(ThinId id) {
  Status st = Apply([&] { return pool_.Delete(id); });
  if (st.code() == Code::kNotFound) return Status::Ok();
  return st;
}

}  // namespace thinsnap
