#include "snapshot/thin_ids.h"

namespace thinsnap {

void ThinIdAllocator::Reserve(const std::vector<ThinId>& ids) {
  std::lock_guard lock(mu_);
  used_.insert(ids.begin(), ids.end());
}

Result<ThinId> ThinIdAllocator::Allocate() {
  std::lock_guard lock(mu_);
  // Walk the sorted set for the first gap: O(n) in live ids, which is cheap
  // next to the pool message that follows.
  ThinId candidate = 0;
  for (ThinId id : used_) {
    if (id != candidate) break;
    ++candidate;
  }
  if (candidate > kMaxThinId) {
    return Status::ResourceExhausted("all 2^24 thin device ids are in use");
  }
  used_.insert(candidate);
  return candidate;
}

void ThinIdAllocator::Release(ThinId id) {
  std::lock_guard lock(mu_);
  used_.erase(id);
}

ThinIdLocks::Hold::Hold(ThinIdLocks& locks, ThinId id) : locks_(locks), id_(id) {
  std::unique_lock lock(locks_.mu_);
  locks_.cv_.wait(lock, [&] { return !locks_.held_.count(id_); });
  locks_.held_.insert(id_);
}

ThinIdLocks::Hold::~Hold() {
  std::lock_guard lock(locks_.mu_);
  locks_.held_.erase(id_);
  locks_.cv_.notify_all();
}

}  // namespace thinsnap
