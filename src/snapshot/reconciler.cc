#include "snapshot/reconciler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

namespace thinsnap {
namespace {

std::string IdList(const std::vector<ThinId>& ids) {
  std::string s;
  for (ThinId id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

}  // namespace

std::string ReconcileReport::Summary() const {
  if (clean()) return "metadata and pool agree";
  std::string s;
  auto add = [&](const std::string& part) { s += (s.empty() ? "" : "; ") + part; };
  if (unfinished_creates) add(std::to_string(unfinished_creates) + " unfinished create(s)");
  if (unfinished_deletes) add(std::to_string(unfinished_deletes) + " unfinished delete(s)");
  if (!orphan_ids.empty()) add("orphan thin ids [" + IdList(orphan_ids) + "]");
  if (!stray_devices.empty()) add("stray active devices [" + IdList(stray_devices) + "]");
  if (!reactivated.empty()) add("inactive snapshot devices [" + IdList(reactivated) + "]");
  if (!lost.empty()) add(std::to_string(lost.size()) + " snapshot(s) without a thin device");
  for (const auto& p : problems) add(p);
  return s;
}

Result<ReconcileReport> Reconciler::Run(bool repair) {
  ReconcileReport report;
  THINSNAP_RETURN_IF_ERROR(UndoIntents(repair, &report));
  THINSNAP_RETURN_IF_ERROR(DeleteOrphans(repair, &report));
  THINSNAP_RETURN_IF_ERROR(FixActivation(repair, &report));
  return report;
}

// Finishes `intents` (pool side first, then the metadata), in one batch.
Status Reconciler::Finish(const std::vector<Intent>& intents, ReconcileReport* report) {
  std::vector<ReclaimTarget> targets;
  for (const Intent& intent : intents) targets.push_back(TargetOf(intent));
  const std::vector<Status> done = ReclaimThins(pool_, targets, reclaim_);
  std::vector<int64_t> finished;
  for (size_t i = 0; i < intents.size(); ++i) {
    if (!done[i].ok()) {
      report->problems.push_back("thin id " + std::to_string(intents[i].thin_id) + ": " +
                                 done[i].ToString());
      continue;  // keep the intent: the next run, or the reclaimer, retries
    }
    // An unfinished snapshot row goes with its intent (ON DELETE CASCADE).
    if (intents[i].snapshot_id) {
      THINSNAP_RETURN_IF_ERROR(store_.DropUnfinished(intents[i].snapshot_id));
    } else {
      finished.push_back(intents[i].id);
    }
  }
  return store_.FinishIntents(finished);
}

Status Reconciler::UndoIntents(bool repair, ReconcileReport* report) {
  auto intents = store_.ListIntents();
  if (!intents.ok()) return intents.status();
  for (const Intent& intent : *intents) {
    if (intent.op == IntentOp::kCreate) {
      ++report->unfinished_creates;
    } else {
      ++report->unfinished_deletes;
    }
  }
  if (!repair || intents->empty()) return Status::Ok();
  return Finish(*intents, report);
}

Status Reconciler::DeleteOrphans(bool repair, ReconcileReport* report) {
  auto in_pool = pool_.ListThinIds();
  if (!in_pool.ok()) return in_pool.status().Annotate("list thin ids");
  auto known = store_.ThinIdsInUse();
  if (!known.ok()) return known.status();
  const std::set<ThinId> pool_ids(in_pool->begin(), in_pool->end());
  const std::set<ThinId> db_ids(known->begin(), known->end());

  std::vector<Intent> orphans;
  for (ThinId id : pool_ids) {
    if (db_ids.count(id)) continue;
    report->orphan_ids.push_back(id);
    if (!repair) continue;
    // Record first, so a crash during the delete is finished next time.
    auto intent = store_.RecordDelete(id);
    if (!intent.ok()) return intent.status();
    orphans.push_back(*intent);
  }
  if (!orphans.empty()) THINSNAP_RETURN_IF_ERROR(Finish(orphans, report));

  Status st = store_.ForEach([&](const SnapshotRecord& r) {
    if (!pool_ids.count(r.thin_id)) report->lost.push_back(r.info.name);
    return Status::Ok();
  });
  THINSNAP_RETURN_IF_ERROR(st);
  auto base = store_.GetBase();
  if (!base.ok()) return base.status();
  if (*base && !pool_ids.count((*base)->thin_id)) report->lost.push_back("(base device)");
  return Status::Ok();
}

Status Reconciler::FixActivation(bool repair, ReconcileReport* report) {
  auto active_ids = pool_.ListActive();
  if (!active_ids.ok()) return active_ids.status().Annotate("list active devices");
  const std::set<ThinId> active(active_ids->begin(), active_ids->end());
  auto half_made_ids = pool_.ListHalfMade();
  if (!half_made_ids.ok()) return half_made_ids.status().Annotate("check active devices");
  const std::set<ThinId> half_made(half_made_ids->begin(), half_made_ids->end());

  std::set<ThinId> wanted;
  for (Kind kind : {Kind::kActive, Kind::kView}) {
    auto records = store_.ListByKind(kind);
    if (!records.ok()) return records.status();
    for (const SnapshotRecord& r : *records) {
      wanted.insert(r.thin_id);
      if (active.count(r.thin_id) && !half_made.count(r.thin_id)) continue;
      report->reactivated.push_back(r.thin_id);
      if (!repair) continue;
      // A half-made device (a kill during its activation) is completed.
      Access access = kind == Kind::kView ? Access::kReadOnly : Access::kReadWrite;
      Status st = pool_.Activate(r.thin_id, r.size_bytes, access);
      if (!st.ok()) report->problems.push_back("activate " + r.info.name + ": " + st.ToString());
    }
  }
  // A device whose delete is still pending (it is open: UndoIntents left it)
  // is the reclaimer's, which waits for its last close; a deactivation here
  // would turn into a deferred removal under its holder.
  auto intents = store_.ListIntents();
  if (!intents.ok()) return intents.status();
  std::set<ThinId> pending_deletes;
  for (const Intent& intent : *intents) {
    if (intent.op == IntentOp::kDelete) pending_deletes.insert(intent.thin_id);
  }
  for (ThinId id : active) {
    if (wanted.count(id)) continue;
    report->stray_devices.push_back(id);
    if (!repair || pending_deletes.count(id)) continue;
    Status st = pool_.Deactivate(id);
    // A committed layer still mounted by someone is left to deferred removal.
    if (!st.ok()) spdlog::warn("deactivate stray device {}: {}", id, st.ToString());
  }
  return Status::Ok();
}

}  // namespace thinsnap
