#include "snapshot/thin_ids.h"

#include <iterator>

namespace thinsnap {

ThinIdAllocator::ThinIdAllocator() { free_.emplace(0, kMaxThinId); }

void ThinIdAllocator::Reserve(const std::vector<ThinId>& ids) {
  std::lock_guard lock(mu_);
  for (ThinId id : ids) {
    // The run holding `id`, if it is free: the last run starting at or below it.
    auto it = free_.upper_bound(id);
    if (it == free_.begin()) continue;
    --it;
    const auto [first, last] = *it;
    if (last < id) continue;
    free_.erase(it);
    if (first < id) free_.emplace(first, id - 1);
    if (id < last) free_.emplace(id + 1, last);
  }
}

void ThinIdAllocator::SetCursor(ThinId next) {
  std::lock_guard lock(mu_);
  cursor_ = next > kMaxThinId ? 0 : next;
}

Result<ThinId> ThinIdAllocator::Allocate() {
  std::lock_guard lock(mu_);
  if (free_.empty()) return Status::ResourceExhausted("all 2^24 thin device ids are in use");
  // The first free id at or after the cursor: the run holding the cursor, or
  // failing that the next run, or (wrapping around) the lowest.
  auto it = free_.upper_bound(cursor_);
  ThinId id;
  if (it != free_.begin() && std::prev(it)->second >= cursor_) {
    --it;
    id = cursor_;
  } else {
    if (it == free_.end()) it = free_.begin();
    id = it->first;
  }
  const auto [first, last] = *it;
  free_.erase(it);
  if (first < id) free_.emplace(first, id - 1);
  if (id < last) free_.emplace(id + 1, last);
  cursor_ = id == kMaxThinId ? 0 : id + 1;
  return id;
}

void ThinIdAllocator::Release(ThinId id) {
  std::lock_guard lock(mu_);
  if (id > kMaxThinId) return;
  auto next = free_.upper_bound(id);  // the first run starting above `id`
  ThinId first = id, last = id;
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->second >= id) return;  // already free
    if (prev->second + 1 == id) {
      first = prev->first;
      free_.erase(prev);
    }
  }
  if (next != free_.end() && next->first == id + 1) {
    last = next->second;
    next = free_.erase(next);
  }
  free_.emplace_hint(next, first, last);
}

}  // namespace thinsnap
