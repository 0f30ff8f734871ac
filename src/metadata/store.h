// Store: the SQLite metadata of one thinsnap instance.
//
// It records snapshots (key, parent, kind, thin id, size, labels, times), the
// pool's base device, and an intent log of pool operations in flight. Every
// pool change is preceded by a durable intent, so that after a crash the
// reconciler knows exactly which thin ids may be half-created or
// half-deleted. The database runs in WAL mode with synchronous=FULL and
// foreign keys on; the schema is versioned (PRAGMA user_version) and migrated
// forward at Open.
//
// Keys are opaque byte strings; the store never interprets them.
// Thread safety: all methods are safe to call concurrently (one connection
// behind a mutex; every method is one short transaction).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "metadata/snapshot_record.h"
#include "metadata/snapshot_types.h"
#include "metadata/sqlite_db.h"
#include "metadata/visible_snapshots.h"
#include "pool/pool.h"

namespace thinsnap {

// Sizes containerd enforces, plus ours for keys.
inline constexpr size_t kMaxKeyBytes = 4096;
inline constexpr size_t kMaxLabelBytes = 4096;  // key + value of one label

// InvalidArgument unless 1 <= size <= kMaxKeyBytes and no NUL byte.
Status ValidateKey(std::string_view what, std::string_view key);
// InvalidArgument if any label's key+value exceeds kMaxLabelBytes, or a
// label key is empty or holds a NUL byte.
Status ValidateLabels(const Labels& labels);

enum class IntentOp { kCreate = 1, kDelete = 2 };

// One pool operation that may have been half done.
struct Intent {
  int64_t id = 0;
  IntentOp op = IntentOp::kCreate;
  ThinId thin_id = 0;
  int64_t snapshot_id = 0;  // kCreate of a snapshot; 0 for the base device
  // kDelete: false for a device that cannot have written a block (a view).
  bool may_own_blocks = true;
};

struct BaseDevice {
  ThinId thin_id = 0;
  uint64_t size_bytes = 0;
  std::string fs_type;
};

// A device holding an origin's filesystem grown to a larger size
// (snapshot/grown_origins.h).
struct GrownOrigin {
  ThinId thin_id = 0;
  ThinId origin_thin_id = 0;  // a committed snapshot's device, or the base device
  uint64_t size_bytes = 0;
};

struct NewSnapshot {
  std::string key;
  std::string parent;  // empty for a root snapshot
  Kind kind = Kind::kActive;
  ThinId thin_id = 0;
  // At least this size; a child is recorded with its parent's size if that
  // is larger (see PendingCreate::size_bytes).
  uint64_t size_bytes = 0;
  Labels labels;
  int64_t now_ns = 0;
};

// What BeginCreate reserved.
struct PendingCreate {
  int64_t snapshot_id = 0;
  int64_t intent_id = 0;
  std::optional<ThinId> parent_thin_id;  // unset for a root snapshot
  uint64_t parent_mapped_bytes = 0;
  uint64_t parent_size_bytes = 0;  // 0 for a root snapshot
  uint64_t size_bytes = 0;         // as recorded: max(asked, the parent's)
  SnapshotRecord record;           // what FinishCreate makes visible
};

// What the metadata holds, for monitoring.
struct StoreCounts {
  int64_t active = 0;  // visible snapshots by kind
  int64_t view = 0;
  int64_t committed = 0;
  int64_t thin_ids_in_use = 0;         // as ThinIdsInUse().size()
  int64_t pending_delete_intents = 0;  // deletes recorded but not yet done
};

struct CommitUsage {
  uint64_t mapped_bytes = 0;
  int64_t usage_bytes = 0;
  int64_t usage_inodes = 0;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::string& path);

  // --- Reads: only snapshots whose creation finished are visible. ---
  Result<SnapshotRecord> Get(std::string_view key);
  // Visits every visible snapshot in creation order, from memory
  // (visible_snapshots.h): it reads no database and takes no lock the
  // writers hold across I/O. The callback runs outside every lock, in pages;
  // a snapshot made or removed meanwhile may or may not be visited.
  Status ForEach(const std::function<Status(const SnapshotRecord&)>& fn);
  // The parent's record, for usage arithmetic.
  Result<SnapshotRecord> GetById(int64_t id);

  // --- Snapshot lifecycle. ---
  // Reserves `key` and records a create intent for `thin_id`, atomically.
  // AlreadyExists if the key is taken (by any kind, even one being created);
  // NotFound if the parent is missing; InvalidArgument if it is not committed.
  Result<PendingCreate> BeginCreate(const NewSnapshot& snapshot);
  // Makes the snapshot visible and drops the intent.
  Status FinishCreate(const PendingCreate& pending);
  // Forgets the snapshot and the intent (after the pool side was undone).
  Status AbortCreate(const PendingCreate& pending);

  // Turns active `key` into committed `name` with `labels` (not inherited).
  // NotFound if `key` is missing; FailedPrecondition if it is not active;
  // AlreadyExists if `name` is taken.
  Status Commit(std::string_view key, std::string_view name, const Labels& labels,
                const CommitUsage& usage, int64_t now_ns);

  // Deletes `key` and records a delete intent for its thin id, atomically,
  // with one for each of its grown origins, which it drops.
  // NotFound if missing; FailedPrecondition if it has children.
  Result<Intent> BeginRemove(std::string_view key);

  // Replaces the labels of `key`.
  Result<SnapshotRecord> SetLabels(std::string_view key, const Labels& labels, int64_t now_ns);

  // --- Intent log. ---
  Result<std::vector<Intent>> ListIntents();
  // Drops finished intents, all in one transaction.
  Status FinishIntents(const std::vector<int64_t>& intent_ids);
  // Records an intent to delete a thin id the pool holds but no one owns
  // (an orphan found by reconciliation).
  Result<Intent> RecordDelete(ThinId thin_id);
  // Drops a snapshot whose creation never finished, with its intents.
  Status DropUnfinished(int64_t snapshot_id);
  // Visible snapshots of the given kinds (for device re-activation).
  Result<std::vector<SnapshotRecord>> ListByKind(Kind kind);

  // Where thin id allocation continues after a restart: one past the id of
  // the last device (snapshot or other) whose creation began (0 if none ever
  // did).
  Result<ThinId> ThinIdCursor();

  // Every thin id the metadata accounts for: snapshots (any state), intents,
  // the base device and grown origins.
  Result<std::vector<ThinId>> ThinIdsInUse();

  // Counts for monitoring, read in one short transaction; no rows are copied.
  Result<StoreCounts> Counts();

  // --- Devices of no snapshot: the pool's base device, grown origins. ---
  // Records a create intent for `thin_id` (and moves the id cursor past it);
  // the reconciler deletes the id if the matching Finish never ran.
  Result<Intent> BeginCreateDevice(ThinId thin_id);
  Result<std::optional<BaseDevice>> GetBase();
  Status FinishCreateBase(const Intent& intent, const BaseDevice& base);
  // Records `grown` and drops its create intent, atomically.
  Status FinishGrownOrigin(const Intent& intent, const GrownOrigin& grown);
  Result<std::vector<GrownOrigin>> ListGrownOrigins();
  // Drops a grown origin and records a delete intent for its thin id,
  // atomically. NotFound if it is not (or no longer) recorded.
  Result<Intent> RetireGrownOrigin(ThinId thin_id);

 private:
  explicit Store(Db db) : db_(std::move(db)) {}
  Status Migrate();
  // Fills visible_ from the database (at Open).
  Status LoadVisible();
  // The *Locked helpers run inside a caller's transaction, under mu_.
  Result<Intent> InsertIntentLocked(IntentOp op, ThinId thin_id);
  Status DropIntentLocked(int64_t intent_id);
  Status AdvanceCursorLocked(ThinId allocated);
  Result<SnapshotRecord> GetByKeyLocked(std::string_view key, bool visible_only);
  Result<SnapshotRecord> ReadOneLocked(Stmt& st);
  Status LoadLabels(int64_t id, Labels* labels);
  Status WriteLabels(int64_t id, const Labels& labels);

  std::mutex mu_;
  Db db_;
  // Changed under mu_, after the transaction that changed the database has
  // committed; read without it.
  VisibleSnapshots visible_;
};

}  // namespace thinsnap
