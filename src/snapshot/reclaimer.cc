#include "snapshot/reclaimer.h"

#include <spdlog/spdlog.h>

#include "base/failpoint.h"

namespace thinsnap {

Status DeleteIfPresent(ThinPool& pool, ThinId id) {
  Status st = pool.Delete(id);
  return st.code() == Code::kNotFound ? Status::Ok() : st;
}

Status ReclaimThin(ThinPool& pool, ThinId id, const ReclaimOptions& options) {
  if (options.discard) {
    Status discarded = pool.DiscardAll(id, options.span_bytes);
    // Open: someone still uses the device; a later pass retries. Any other
    // failure (storage without discard support, an id already deleted) must
    // not keep the id from being deleted: the space is then only returned to
    // the pool, not to the data device.
    if (discarded.code() == Code::kUnavailable) return discarded;
    if (!discarded.ok()) {
      spdlog::warn("thin id {}: deleting without discard: {}", id, discarded.ToString());
    }
    THINSNAP_FAILPOINT("reclaim.after_discard");
  }
  THINSNAP_RETURN_IF_ERROR(pool.DeactivateForDelete(id));
  THINSNAP_FAILPOINT("remove.after_deactivate");
  THINSNAP_RETURN_IF_ERROR(DeleteIfPresent(pool, id));
  THINSNAP_FAILPOINT("remove.after_delete");
  return Status::Ok();
}

Status TrimUnused(ThinPool& pool, Filesystem& fs, ThinId id, int64_t created_ns) {
  const std::string device = pool.DevicePath(id);
  // Seconds, rounded down: a mount within the creation's second counts.
  const int64_t since = created_ns / 1'000'000'000;
  return pool.DiscardUnused(id, [&] { return fs.UnusedRanges(device, pool.block_bytes(), since); });
}

Reclaimer::Reclaimer(Store& store, ThinPool& pool, ThinIdLocks& locks, ReclaimOptions options,
                     std::function<void(ThinId)> released)
    : store_(store),
      pool_(pool),
      locks_(locks),
      options_(options),
      released_(std::move(released)) {}

Reclaimer::~Reclaimer() {
  {
    std::lock_guard lock(wake_mu_);
    stopping_ = true;
  }
  wake_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void Reclaimer::Start() {
  worker_ = std::thread([this] { Work(); });
}

void Reclaimer::Wake() {
  {
    std::lock_guard lock(wake_mu_);
    wanted_ = true;
  }
  wake_cv_.notify_one();
}

void Reclaimer::Work() {
  for (;;) {
    {
      std::unique_lock lock(wake_mu_);
      wake_cv_.wait(lock, [&] { return wanted_ || stopping_; });
      if (stopping_) return;
      wanted_ = false;
    }
    auto left = RunPass();
    if (!left.ok()) spdlog::warn("reclaim: {}", left.status().ToString());
  }
}

Result<int> Reclaimer::RunPass() {
  std::lock_guard pass(pass_mu_);
  auto intents = store_.ListIntents();
  if (!intents.ok()) return intents.status();
  int left = 0;
  for (const Intent& intent : *intents) {
    // Creates in flight belong to a running Prepare; only deletes are ours.
    if (intent.op != IntentOp::kDelete) continue;
    Status st;
    {
      ThinIdLocks::Hold hold(locks_, intent.thin_id);
      st = ReclaimThin(pool_, intent.thin_id, options_);
    }
    if (st.ok()) st = store_.FinishIntent(intent.id);
    if (!st.ok()) {
      ++left;
      spdlog::warn("reclaim of thin id {} deferred: {}", intent.thin_id, st.ToString());
      continue;
    }
    released_(intent.thin_id);
  }
  if (left) spdlog::info("reclaim: {} device(s) still busy, will retry", left);
  return left;
}

}  // namespace thinsnap
