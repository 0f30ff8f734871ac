#include "metadata/visible_snapshots.h"

#include <utility>

namespace thinsnap {

void VisibleSnapshots::Put(SnapshotRecord record) {
  const int64_t id = record.id;
  auto shared = std::make_shared<const SnapshotRecord>(std::move(record));
  std::lock_guard lock(mu_);
  by_id_.insert_or_assign(id, std::move(shared));
}

void VisibleSnapshots::Erase(int64_t id) {
  Record gone;  // destroyed outside the lock
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  gone = std::move(it->second);
  by_id_.erase(it);
}

std::vector<VisibleSnapshots::Record> VisibleSnapshots::Page(int64_t after, size_t limit) const {
  std::vector<Record> page;
  page.reserve(limit);
  std::lock_guard lock(mu_);
  for (auto it = by_id_.upper_bound(after); it != by_id_.end() && page.size() < limit; ++it) {
    page.push_back(it->second);
  }
  return page;
}

}  // namespace thinsnap
