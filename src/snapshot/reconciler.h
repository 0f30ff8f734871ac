// Reconciler: makes the metadata and the pool agree again after a crash.
//
// Inputs are the intent log, the snapshots table and the pool's exact list of
// thin ids (not just active devices). With `repair` it:
//   1. undoes every unfinished create (deletes its thin id, drops the row);
//   2. finishes every recorded delete (discarding first, see reclaimer.h);
//   3. deletes thin ids the metadata does not know (orphans);
//   4. deactivates dm devices of the pool that should not be active;
//   5. re-activates active and view snapshots (e.g. after a reboot).
// Without `repair` it only reports. Snapshots whose thin device is missing
// from the pool cannot be repaired; they are reported as lost.
#pragma once

#include <string>
#include <vector>

#include "metadata/store.h"
#include "pool/pool.h"
#include "snapshot/reclaimer.h"

namespace thinsnap {

struct ReconcileReport {
  int unfinished_creates = 0;
  int unfinished_deletes = 0;
  std::vector<ThinId> orphan_ids;     // in the pool, unknown to the metadata
  std::vector<ThinId> stray_devices;  // active but should not be
  std::vector<ThinId> reactivated;    // active/view snapshots brought back
  std::vector<std::string> lost;      // snapshot keys whose device is gone
  std::vector<std::string> problems;  // repairs that failed (e.g. device busy)

  bool clean() const {
    return unfinished_creates == 0 && unfinished_deletes == 0 && orphan_ids.empty() &&
           stray_devices.empty() && reactivated.empty() && lost.empty() && problems.empty();
  }
  std::string Summary() const;
};

class Reconciler {
 public:
  // Thin ids are taken out of the pool as the reclaimer would (`reclaim`).
  Reconciler(Store& store, ThinPool& pool, ReclaimOptions reclaim)
      : store_(store), pool_(pool), reclaim_(reclaim) {}

  Result<ReconcileReport> Run(bool repair);

 private:
  Status UndoIntents(bool repair, ReconcileReport* report);
  Status DeleteOrphans(bool repair, ReconcileReport* report);
  Status FixActivation(bool repair, ReconcileReport* report);
  Status Finish(const std::vector<Intent>& intents, ReconcileReport* report);

  Store& store_;
  ThinPool& pool_;
  const ReclaimOptions reclaim_;
};

}  // namespace thinsnap
