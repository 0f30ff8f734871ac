#include "pool_transactions.h"

#include <spdlog/spdlog.h>

#include "base/failpoint.h"

namespace thinsnap {

template <typename Change>
Status PoolTransactions::Apply(Change change) {
  std::lock_guard lock(mu_);
  THINSNAP_RETURN_IF_ERROR(change());
  THINSNAP_FAILPOINT("pool.before_set_transaction_id");
  // Read the id instead of caching it: an administrator (or LVM) may also
  // bump it, and a stale cache would make every later CAS fail.
  auto status = pool_.QueryStatus();
  if (!status.ok()) return status.status().Annotate("read transaction id");
  const uint64_t tid = status->transaction_id;
  Status st = pool_.SetTransactionId(tid, tid + 1);
  if (!st.ok()) {
    // The change itself is durable; a missed count is harmless because
    // reconciliation compares thin ids, not counts.
    spdlog::warn("set_transaction_id {} {} failed: {}", tid, tid + 1, st.ToString());
  }
  return Status::Ok();
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
