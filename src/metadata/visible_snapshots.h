// VisibleSnapshots: an in-memory copy of every visible snapshot's record, in
// id (creation) order, for walks that must not read the database.
//
// Why: containerd's List, and its garbage collector's walk of a busy node,
// visits every snapshot; at 10,000 snapshots reading them from SQLite was
// three quarters of the server's share of a List. The Store keeps this copy
// beside the database and changes it only after a transaction that changed a
// visible snapshot has committed, in the order those transactions committed,
// so it always equals what the database holds (store_test checks it against
// a store opened afresh from the same file).
//
// Records are immutable once put, and shared: a page handed to a walker stays
// valid, and unchanged, however the snapshots change while it is visited.
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "metadata/snapshot_record.h"

namespace thinsnap {

class VisibleSnapshots {
 public:
  using Record = std::shared_ptr<const SnapshotRecord>;

  // Inserts `record`, or replaces the one with its id.
  void Put(SnapshotRecord record);
  // Forgets the record with `id`, if any.
  void Erase(int64_t id);
  // Up to `limit` records with an id above `after`, in id order.
  std::vector<Record> Page(int64_t after, size_t limit) const;

 private:
  mutable std::mutex mu_;
  std::map<int64_t, Record> by_id_;
};

}  // namespace thinsnap
