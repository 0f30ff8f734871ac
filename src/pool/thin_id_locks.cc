#include "pool/thin_id_locks.h"

namespace thinsnap {

ThinIdLocks::Hold::Hold(ThinIdLocks& locks, ThinId id) : locks_(locks), id_(id) {
  std::unique_lock lock(locks_.mu_);
  locks_.cv_.wait(lock, [&] { return !locks_.held_.contains(id_); });
  locks_.held_.insert(id_);
}

ThinIdLocks::Hold::~Hold() {
  {
    std::lock_guard lock(locks_.mu_);
    locks_.held_.erase(id_);
  }
  locks_.cv_.notify_all();
}

}  // namespace thinsnap
