#include "snapshot/grown_origins.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "base/failpoint.h"
#include "snapshot/reclaimer.h"

namespace thinsnap {

GrownOrigins::GrownOrigins(Store& store, ThinPool& pool, Filesystem& fs, ThinIdAllocator& ids,
                           size_t capacity, std::function<void()> on_retired)
    : store_(store),
      pool_(pool),
      fs_(fs),
      ids_(ids),
      capacity_(capacity),
      on_retired_(std::move(on_retired)) {}

Status GrownOrigins::Load() {
  auto recorded = store_.ListGrownOrigins();
  if (!recorded.ok()) return recorded.status();
  {
    std::lock_guard lock(mu_);
    for (const GrownOrigin& g : *recorded) {
      auto entry = std::make_shared<Entry>();
      entry->ready = true;
      entry->thin_id = g.thin_id;
      entry->last_used = ++clock_;
      entries_[{g.origin_thin_id, g.size_bytes}] = std::move(entry);
    }
  }
  RetireBeyondCapacity();
  return Status::Ok();
}

Status GrownOrigins::WithGrown(ThinId origin, uint64_t origin_bytes, uint64_t size_bytes,
                               const std::function<Status(ThinId)>& fn) {
  const Key key{origin, size_bytes};
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard lock(mu_);
    auto& slot = entries_[key];
    if (!slot) slot = std::make_shared<Entry>();
    entry = slot;
    ++entry->users;
  }
  Status st;
  bool built = false;
  {
    // Callers of the same key wait here for one build; a failed build is
    // tried again by the next caller.
    std::lock_guard build(entry->build_mu);
    if (!entry->ready) {
      auto id = Build(origin, origin_bytes, size_bytes);
      if (id.ok()) {
        std::lock_guard lock(mu_);
        entry->thin_id = *id;
        entry->ready = true;
        built = true;
      } else {
        st = id.status();
      }
    }
  }
  if (st.ok()) st = fn(entry->thin_id);
  Release(key, entry);
  if (built) RetireBeyondCapacity();
  return st;
}

void GrownOrigins::ForgetOrigin(ThinId origin) {
  std::lock_guard lock(mu_);
  auto it = entries_.lower_bound({origin, 0});
  while (it != entries_.end() && it->first.first == origin) it = entries_.erase(it);
}

// A thin snapshot of `origin`, activated at `size_bytes`, its filesystem
// grown, then deactivated, which flushes it. Each step runs only if all
// before it succeeded; failpoints sit between them for the crash suites.
Result<ThinId> GrownOrigins::Build(ThinId origin, uint64_t origin_bytes, uint64_t size_bytes) {
  auto id = ids_.Allocate();
  if (!id.ok()) return id.status();
  auto intent = store_.BeginCreateDevice(*id);
  if (!intent.ok()) {
    ids_.Release(*id);
    return intent.status();
  }
  Status st = failpoint::Hit("grow.after_intent");
  if (st.ok()) st = pool_.CreateSnap(*id, origin);
  if (st.ok()) st = failpoint::Hit("grow.after_snap");
  if (st.ok()) st = pool_.Activate(*id, size_bytes, Access::kReadWrite);
  if (st.ok()) st = fs_.Grow(pool_.DevicePath(*id), origin_bytes);
  if (st.ok()) st = failpoint::Hit("grow.after_grow");
  if (st.ok()) {
    st = pool_.Deactivate(*id);
    // Still open (a udev probe): flushed, and gone at its last close. The
    // pool snapshots it as it snapshots any active origin.
    if (st.code() == Code::kUnavailable) st = Status::Ok();
  }
  if (st.ok()) st = store_.FinishGrownOrigin(*intent, {*id, origin, size_bytes});
  if (st.ok()) {
    spdlog::info("grew thin id {} ({} bytes) to {} bytes as thin id {}", origin, origin_bytes,
                 size_bytes, *id);
    return *id;
  }
  // Undo in reverse order. If the pool refuses, the id is handed to a delete
  // intent for the reclaimer, and stays reserved until then.
  Status undo = pool_.DeactivateForDelete(*id);
  if (undo.ok()) undo = DeleteIfPresent(pool_, *id);
  Status forgot = store_.FinishIntents({intent->id});
  if (undo.ok() && forgot.ok()) {
    ids_.Release(*id);
  } else if (forgot.ok()) {
    spdlog::warn("failed grow: thin id {} left for cleanup: {}", *id, undo.ToString());
    auto later = store_.RecordDelete(*id);
    if (!later.ok())
      spdlog::warn("record delete of thin id {}: {}", *id, later.status().ToString());
    if (on_retired_) on_retired_();
  } else {
    // The next start's reconciler undoes it from the create intent.
    spdlog::error("failed grow: undo of thin id {} incomplete: {}", *id, forgot.ToString());
  }
  return st.Annotate("grow thin id " + std::to_string(origin) + " to " +
                     std::to_string(size_bytes) + " bytes");
}

void GrownOrigins::Release(const Key& key, const std::shared_ptr<Entry>& entry) {
  std::lock_guard lock(mu_);
  --entry->users;
  entry->last_used = ++clock_;
  auto it = entries_.find(key);
  // A failed build leaves nothing behind once no one else waits on it.
  if (!entry->ready && entry->users == 0 && it != entries_.end() && it->second == entry) {
    entries_.erase(it);
  }
}

void GrownOrigins::RetireBeyondCapacity() {
  std::vector<ThinId> victims;
  {
    std::lock_guard lock(mu_);
    size_t ready = 0;
    for (const auto& [key, entry] : entries_) ready += entry->ready ? 1 : 0;
    while (ready > capacity_) {
      auto victim = entries_.end();
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        const Entry& e = *it->second;
        if (!e.ready || e.users > 0) continue;
        if (victim == entries_.end() || e.last_used < victim->second->last_used) victim = it;
      }
      if (victim == entries_.end()) break;  // all in use: retired by a later build
      victims.push_back(victim->second->thin_id);
      entries_.erase(victim);
      --ready;
    }
  }
  for (ThinId id : victims) {
    // If this fails the row stays, and the next start loads and retires it.
    auto intent = store_.RetireGrownOrigin(id);
    if (!intent.ok()) spdlog::warn("retire grown thin id {}: {}", id, intent.status().ToString());
  }
  if (!victims.empty() && on_retired_) on_retired_();
}

}  // namespace thinsnap
