#include "metadata/store.h"

#include <algorithm>

namespace thinsnap {
namespace {

// Schema migrations, applied in order; PRAGMA user_version counts how many
// have run. Append only: never edit a migration that has shipped.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE snapshots (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  key          TEXT    NOT NULL UNIQUE,
  parent_id    INTEGER REFERENCES snapshots(id),
  kind         INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
  ready        INTEGER NOT NULL DEFAULT 0,
  thin_id      INTEGER NOT NULL UNIQUE CHECK (thin_id BETWEEN 0 AND 16777215),
  size_bytes   INTEGER NOT NULL,
  mapped_bytes INTEGER NOT NULL DEFAULT 0,
  usage_bytes  INTEGER NOT NULL DEFAULT 0,
  usage_inodes INTEGER NOT NULL DEFAULT 0,
  created_ns   INTEGER NOT NULL,
  updated_ns   INTEGER NOT NULL
);
CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
CREATE TABLE labels (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
  name        TEXT    NOT NULL,
  value       TEXT    NOT NULL,
  PRIMARY KEY (snapshot_id, name)
) WITHOUT ROWID;
CREATE TABLE intents (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  op          INTEGER NOT NULL CHECK (op IN (1, 2)),
  thin_id     INTEGER NOT NULL,
  snapshot_id INTEGER REFERENCES snapshots(id) ON DELETE CASCADE
);
CREATE TABLE base_device (
  singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
  thin_id    INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL,
  fs_type    TEXT    NOT NULL
);
)sql",
    // Deleting a snapshot row cascades to its intents: without this index each
    // delete scans every pending intent, so a mass removal that outruns the
    // reclaimer grew quadratic (bench_scale: 14-16 ms per Remove at 10,000).
    "CREATE INDEX intents_by_snapshot ON intents(snapshot_id);",
    // A delete intent says whether the device can have written a block at
    // all (a view cannot), so the reclaimer skips the discard. Thin ids are
    // handed out round-robin from a cursor that survives restarts, so a
    // device name (derived from the id) does not come back soon after its
    // snapshot was removed.
    R"sql(
ALTER TABLE intents ADD COLUMN may_own_blocks INTEGER NOT NULL DEFAULT 1;
CREATE TABLE thin_id_cursor (
  singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
  next_thin_id INTEGER NOT NULL
);
)sql",
    // Grown origins (snapshot/grown_origins.h): a thin snapshot of an origin
    // (a committed snapshot's device or the base device) whose filesystem was
    // grown once to size_bytes, which sized Prepares and Views snapshot
    // instead of growing each one.
    R"sql(
CREATE TABLE grown_origins (
  thin_id        INTEGER PRIMARY KEY CHECK (thin_id BETWEEN 0 AND 16777215),
  origin_thin_id INTEGER NOT NULL,
  size_bytes     INTEGER NOT NULL,
  UNIQUE (origin_thin_id, size_bytes)
);
)sql",
};

// Every thin id the metadata accounts for.
constexpr const char* kThinIdsInUse =
    "SELECT thin_id FROM snapshots UNION SELECT thin_id FROM intents"
    " UNION SELECT thin_id FROM base_device UNION SELECT thin_id FROM grown_origins";

constexpr const char* kSelectSnapshot =
    "SELECT s.id, s.key, COALESCE(p.key, ''), s.kind, s.thin_id, s.size_bytes, s.mapped_bytes,"
    " s.usage_bytes, s.usage_inodes, s.created_ns, s.updated_ns"
    " FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id ";

SnapshotRecord ReadRecord(const Stmt& st) {
  SnapshotRecord r;
  r.id = st.Int(0);
  r.info.name = st.Text(1);
  r.info.parent = st.Text(2);
  r.info.kind = static_cast<Kind>(st.Int(3));
  r.thin_id = static_cast<ThinId>(st.Int(4));
  r.size_bytes = static_cast<uint64_t>(st.Int(5));
  r.mapped_bytes = static_cast<uint64_t>(st.Int(6));
  r.usage_bytes = st.Int(7);
  r.usage_inodes = st.Int(8);
  r.info.created_ns = st.Int(9);
  r.info.updated_ns = st.Int(10);
  return r;
}

Intent MakeIntent(int64_t id, IntentOp op, ThinId thin_id, int64_t snapshot_id = 0) {
  Intent intent;
  intent.id = id;
  intent.op = op;
  intent.thin_id = thin_id;
  intent.snapshot_id = snapshot_id;
  return intent;
}

Status NotFoundKey(std::string_view key) {
  return Status::NotFound("snapshot " + std::string(key) + " does not exist");
}

}  // namespace

Status ValidateKey(std::string_view what, std::string_view key) {
  if (key.empty()) return Status::InvalidArgument(std::string(what) + " must not be empty");
  if (key.size() > kMaxKeyBytes) {
    return Status::InvalidArgument(std::string(what) + " is " + std::to_string(key.size()) +
                                   " bytes; the maximum is " + std::to_string(kMaxKeyBytes));
  }
  if (key.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument(std::string(what) + " contains a NUL byte");
  }
  return Status::Ok();
}

Status ValidateLabels(const Labels& labels) {
  for (const auto& [k, v] : labels) {
    if (k.empty()) return Status::InvalidArgument("label key must not be empty");
    if (k.size() + v.size() > kMaxLabelBytes) {
      return Status::InvalidArgument("label " + k.substr(0, 64) + ": key and value are " +
                                     std::to_string(k.size() + v.size()) +
                                     " bytes; the maximum is " + std::to_string(kMaxLabelBytes));
    }
    if (k.find('\0') != std::string::npos || v.find('\0') != std::string::npos) {
      return Status::InvalidArgument("label " + k.substr(0, 64) + " contains a NUL byte");
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  auto db = Db::Open(path);
  if (!db.ok()) return db.status();
  std::unique_ptr<Store> store(new Store(std::move(db).value()));
  // WAL lets readers proceed during a commit; FULL makes every commit durable
  // before the pool is touched, which the intent log relies on.
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    THINSNAP_RETURN_IF_ERROR(store->db_.Exec(pragma).Annotate(pragma));
  }
  THINSNAP_RETURN_IF_ERROR(store->Migrate());
  THINSNAP_RETURN_IF_ERROR(store->LoadVisible());
  return store;
}

Status Store::Migrate() {
  auto st = db_.Prepare("PRAGMA user_version");
  if (!st.ok()) return st.status();
  auto row = st->Step();
  if (!row.ok()) return row.status();
  const int64_t version = st->Int(0);
  const int64_t latest = std::size(kMigrations);
  if (version > latest) {
    return Status::FailedPrecondition("metadata schema version " + std::to_string(version) +
                                      " is newer than this thinsnap supports (" +
                                      std::to_string(latest) + ")");
  }
  for (int64_t v = version; v < latest; ++v) {
    Txn txn(db_);
    THINSNAP_RETURN_IF_ERROR(txn.begin_status());
    THINSNAP_RETURN_IF_ERROR(
        db_.Exec(kMigrations[v]).Annotate("migration " + std::to_string(v + 1)));
    THINSNAP_RETURN_IF_ERROR(db_.Exec("PRAGMA user_version = " + std::to_string(v + 1)));
    THINSNAP_RETURN_IF_ERROR(txn.Commit());
  }
  return Status::Ok();
}

Status Store::LoadLabels(int64_t id, Labels* labels) {
  auto st = db_.Prepare("SELECT name, value FROM labels WHERE snapshot_id = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, id);
  for (;;) {
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return Status::Ok();
    (*labels)[st->Text(0)] = st->Text(1);
  }
}

Status Store::WriteLabels(int64_t id, const Labels& labels) {
  auto del = db_.Prepare("DELETE FROM labels WHERE snapshot_id = ?");
  if (!del.ok()) return del.status();
  THINSNAP_RETURN_IF_ERROR(del->Bind(1, id).Exec());
  auto ins = db_.Prepare("INSERT INTO labels (snapshot_id, name, value) VALUES (?, ?, ?)");
  if (!ins.ok()) return ins.status();
  for (const auto& [k, v] : labels) {
    THINSNAP_RETURN_IF_ERROR(ins->Bind(1, id).Bind(2, k).Bind(3, v).Exec());
    ins->Reset();
  }
  return Status::Ok();
}

Result<SnapshotRecord> Store::ReadOneLocked(Stmt& st) {
  auto row = st.Step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::NotFound("snapshot does not exist");
  SnapshotRecord r = ReadRecord(st);
  THINSNAP_RETURN_IF_ERROR(LoadLabels(r.id, &r.info.labels));
  return r;
}

Result<SnapshotRecord> Store::GetByKeyLocked(std::string_view key, bool visible_only) {
  auto st = db_.Prepare(std::string(kSelectSnapshot) +
                        (visible_only ? "WHERE s.key = ? AND s.ready = 1" : "WHERE s.key = ?"));
  if (!st.ok()) return st.status();
  st->Bind(1, key);
  auto r = ReadOneLocked(*st);
  if (!r.ok() && r.status().code() == Code::kNotFound) return NotFoundKey(key);
  return r;
}

Result<SnapshotRecord> Store::Get(std::string_view key) {
  std::lock_guard lock(mu_);
  return GetByKeyLocked(key, true);
}

Result<SnapshotRecord> Store::GetById(int64_t id) {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(std::string(kSelectSnapshot) + "WHERE s.id = ?");
  if (!st.ok()) return st.status();
  st->Bind(1, id);
  return ReadOneLocked(*st);
}

Status Store::ForEach(const std::function<Status(const SnapshotRecord&)>& fn) {
  constexpr size_t kPage = 512;
  int64_t after = 0;
  for (;;) {
    const std::vector<VisibleSnapshots::Record> page = visible_.Page(after, kPage);
    for (const auto& r : page) THINSNAP_RETURN_IF_ERROR(fn(*r));
    if (page.size() < kPage) return Status::Ok();
    after = page.back()->id;
  }
}

Status Store::LoadVisible() {
  constexpr int kPage = 512;
  std::lock_guard lock(mu_);
  Txn txn(db_);  // one consistent reading of every page
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  int64_t after = 0;
  for (;;) {
    std::vector<SnapshotRecord> page;
    auto st =
        db_.Prepare(std::string(kSelectSnapshot) +
                    "WHERE s.ready = 1 AND s.id > ? ORDER BY s.id LIMIT " + std::to_string(kPage));
    if (!st.ok()) return st.status();
    st->Bind(1, after);
    for (;;) {
      auto row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      page.push_back(ReadRecord(*st));
    }
    if (page.empty()) return txn.Commit();
    auto ls = db_.Prepare(
        "SELECT snapshot_id, name, value FROM labels WHERE snapshot_id BETWEEN ? AND ?"
        " ORDER BY snapshot_id");
    if (!ls.ok()) return ls.status();
    ls->Bind(1, page.front().id).Bind(2, page.back().id);
    auto it = page.begin();
    for (;;) {
      auto row = ls->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      const int64_t sid = ls->Int(0);
      while (it != page.end() && it->id < sid) ++it;
      if (it != page.end() && it->id == sid) it->info.labels[ls->Text(1)] = ls->Text(2);
    }
    after = page.back().id;
    const bool last = static_cast<int>(page.size()) < kPage;
    for (SnapshotRecord& r : page) visible_.Put(std::move(r));
    if (last) return txn.Commit();
  }
}

Result<PendingCreate> Store::BeginCreate(const NewSnapshot& s) {
  std::lock_guard lock(mu_);
  // Not fsynced: if a power cut loses it, the pool change it announces is an
  // orphan thin id (or nothing), which the reconciler deletes; FinishCreate's
  // durable commit makes it durable with itself.
  Txn txn(db_, Sync::kOrdered);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  PendingCreate pending;
  int64_t parent_id = 0;
  if (!s.parent.empty()) {
    auto parent = GetByKeyLocked(s.parent, true);
    if (!parent.ok()) {
      if (parent.status().code() == Code::kNotFound) {
        return Status::NotFound("parent snapshot " + s.parent + " does not exist");
      }
      return parent.status();
    }
    if (parent->info.kind != Kind::kCommitted) {
      return Status::InvalidArgument("parent " + s.parent + " is not a committed snapshot");
    }
    parent_id = parent->id;
    pending.parent_thin_id = parent->thin_id;
    pending.parent_mapped_bytes = parent->mapped_bytes;
    pending.parent_size_bytes = parent->size_bytes;
  }
  pending.size_bytes = std::max(s.size_bytes, pending.parent_size_bytes);
  auto ins = db_.Prepare(
      "INSERT INTO snapshots (key, parent_id, kind, thin_id, size_bytes, created_ns, updated_ns)"
      " VALUES (?, ?, ?, ?, ?, ?, ?)");
  if (!ins.ok()) return ins.status();
  ins->Bind(1, s.key);
  if (parent_id) {
    ins->Bind(2, parent_id);
  } else {
    ins->BindNull(2);
  }
  ins->Bind(3, static_cast<int64_t>(s.kind))
      .Bind(4, static_cast<int64_t>(s.thin_id))
      .Bind(5, static_cast<int64_t>(pending.size_bytes))
      .Bind(6, s.now_ns)
      .Bind(7, s.now_ns);
  Status st = ins->Exec();
  if (st.code() == Code::kAlreadyExists) {
    return Status::AlreadyExists("snapshot " + s.key + " already exists");
  }
  THINSNAP_RETURN_IF_ERROR(st);
  pending.snapshot_id = db_.LastInsertId();
  THINSNAP_RETURN_IF_ERROR(WriteLabels(pending.snapshot_id, s.labels));
  SnapshotRecord& r = pending.record;
  r.id = pending.snapshot_id;
  r.info = Info{s.key, s.parent, s.kind, s.labels, s.now_ns, s.now_ns};
  r.thin_id = s.thin_id;
  r.size_bytes = pending.size_bytes;
  auto intent = db_.Prepare("INSERT INTO intents (op, thin_id, snapshot_id) VALUES (?, ?, ?)");
  if (!intent.ok()) return intent.status();
  THINSNAP_RETURN_IF_ERROR(intent->Bind(1, static_cast<int64_t>(IntentOp::kCreate))
                               .Bind(2, static_cast<int64_t>(s.thin_id))
                               .Bind(3, pending.snapshot_id)
                               .Exec());
  pending.intent_id = db_.LastInsertId();
  THINSNAP_RETURN_IF_ERROR(AdvanceCursorLocked(s.thin_id));
  THINSNAP_RETURN_IF_ERROR(txn.Commit());
  return pending;
}

Result<Intent> Store::InsertIntentLocked(IntentOp op, ThinId thin_id) {
  auto ins = db_.Prepare("INSERT INTO intents (op, thin_id) VALUES (?, ?)");
  if (!ins.ok()) return ins.status();
  THINSNAP_RETURN_IF_ERROR(
      ins->Bind(1, static_cast<int64_t>(op)).Bind(2, static_cast<int64_t>(thin_id)).Exec());
  return MakeIntent(db_.LastInsertId(), op, thin_id);
}

Status Store::DropIntentLocked(int64_t intent_id) {
  auto del = db_.Prepare("DELETE FROM intents WHERE id = ?");
  if (!del.ok()) return del.status();
  return del->Bind(1, intent_id).Exec();
}

Status Store::AdvanceCursorLocked(ThinId allocated) {
  auto cursor = db_.Prepare(
      "INSERT INTO thin_id_cursor (singleton, next_thin_id) VALUES (1, ?)"
      " ON CONFLICT (singleton) DO UPDATE SET next_thin_id = excluded.next_thin_id");
  if (!cursor.ok()) return cursor.status();
  return cursor->Bind(1, (static_cast<int64_t>(allocated) + 1) % (int64_t{kMaxThinId} + 1)).Exec();
}

Status Store::FinishCreate(const PendingCreate& pending) {
  std::lock_guard lock(mu_);
  Txn txn(db_);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  auto up = db_.Prepare("UPDATE snapshots SET ready = 1 WHERE id = ?");
  if (!up.ok()) return up.status();
  THINSNAP_RETURN_IF_ERROR(up->Bind(1, pending.snapshot_id).Exec());
  THINSNAP_RETURN_IF_ERROR(DropIntentLocked(pending.intent_id));
  THINSNAP_RETURN_IF_ERROR(txn.Commit());
  visible_.Put(pending.record);
  return Status::Ok();
}

Status Store::AbortCreate(const PendingCreate& pending) {
  return DropUnfinished(pending.snapshot_id);
}

Status Store::DropUnfinished(int64_t snapshot_id) {
  std::lock_guard lock(mu_);
  // Intents and labels go with the row (ON DELETE CASCADE).
  auto del = db_.Prepare("DELETE FROM snapshots WHERE id = ? AND ready = 0");
  if (!del.ok()) return del.status();
  return del->Bind(1, snapshot_id).Exec();
}

Status Store::Commit(std::string_view key, std::string_view name, const Labels& labels,
                     const CommitUsage& usage, int64_t now_ns) {
  std::lock_guard lock(mu_);
  Txn txn(db_);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  auto taken = GetByKeyLocked(name, false);
  if (taken.ok()) return Status::AlreadyExists("snapshot " + std::string(name) + " already exists");
  if (taken.status().code() != Code::kNotFound) return taken.status();
  auto active = GetByKeyLocked(key, true);
  if (!active.ok()) return active.status();
  if (active->info.kind != Kind::kActive) {
    return Status::FailedPrecondition("snapshot " + std::string(key) + " is not active");
  }
  auto up = db_.Prepare(
      "UPDATE snapshots SET key = ?, kind = ?, mapped_bytes = ?, usage_bytes = ?,"
      " usage_inodes = ?, created_ns = ?, updated_ns = ? WHERE id = ?");
  if (!up.ok()) return up.status();
  up->Bind(1, name)
      .Bind(2, static_cast<int64_t>(Kind::kCommitted))
      .Bind(3, static_cast<int64_t>(usage.mapped_bytes))
      .Bind(4, usage.usage_bytes)
      .Bind(5, usage.usage_inodes)
      .Bind(6, now_ns)
      .Bind(7, now_ns)
      .Bind(8, active->id);
  THINSNAP_RETURN_IF_ERROR(up->Exec());
  THINSNAP_RETURN_IF_ERROR(WriteLabels(active->id, labels));
  THINSNAP_RETURN_IF_ERROR(txn.Commit());
  SnapshotRecord& r = *active;
  r.info.name = name;
  r.info.kind = Kind::kCommitted;
  r.info.labels = labels;
  r.info.created_ns = r.info.updated_ns = now_ns;
  r.mapped_bytes = usage.mapped_bytes;
  r.usage_bytes = usage.usage_bytes;
  r.usage_inodes = usage.usage_inodes;
  visible_.Put(std::move(r));
  return Status::Ok();
}

Result<Intent> Store::BeginRemove(std::string_view key) {
  std::lock_guard lock(mu_);
  Txn txn(db_);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  auto rec = GetByKeyLocked(key, true);
  if (!rec.ok()) return rec.status();
  auto kids = db_.Prepare("SELECT COUNT(*) FROM snapshots WHERE parent_id = ?");
  if (!kids.ok()) return kids.status();
  kids->Bind(1, rec->id);
  auto row = kids->Step();
  if (!row.ok()) return row.status();
  if (kids->Int(0) > 0) {
    return Status::FailedPrecondition("cannot remove snapshot " + std::string(key) + ": it has " +
                                      std::to_string(kids->Int(0)) + " child snapshot(s)");
  }
  // The size of its origin: the parent's device, or the base device.
  auto origin = db_.Prepare(
      "SELECT COALESCE((SELECT p.size_bytes FROM snapshots s JOIN snapshots p ON p.id = s.parent_id"
      " WHERE s.id = ?), (SELECT size_bytes FROM base_device), 0)");
  if (!origin.ok()) return origin.status();
  origin->Bind(1, rec->id);
  row = origin->Step();
  if (!row.ok()) return row.status();
  Intent intent = MakeIntent(0, IntentOp::kDelete, rec->thin_id);
  // A view is read-only; only one that was grown beyond its origin (resize2fs
  // wrote to it) holds blocks of its own.
  intent.may_own_blocks =
      rec->info.kind != Kind::kView || rec->size_bytes > static_cast<uint64_t>(origin->Int(0));
  auto del = db_.Prepare("DELETE FROM snapshots WHERE id = ?");
  if (!del.ok()) return del.status();
  THINSNAP_RETURN_IF_ERROR(del->Bind(1, rec->id).Exec());
  auto ins = db_.Prepare("INSERT INTO intents (op, thin_id, may_own_blocks) VALUES (?, ?, ?)");
  if (!ins.ok()) return ins.status();
  ins->Bind(1, static_cast<int64_t>(IntentOp::kDelete)).Bind(2, static_cast<int64_t>(rec->thin_id));
  THINSNAP_RETURN_IF_ERROR(ins->Bind(3, int64_t{intent.may_own_blocks}).Exec());
  intent.id = db_.LastInsertId();
  // Its grown origins go with it: nothing can snapshot them any more.
  auto retire = db_.Prepare(
      "INSERT INTO intents (op, thin_id)"
      " SELECT ?, thin_id FROM grown_origins WHERE origin_thin_id = ? ORDER BY thin_id");
  if (!retire.ok()) return retire.status();
  THINSNAP_RETURN_IF_ERROR(retire->Bind(1, static_cast<int64_t>(IntentOp::kDelete))
                               .Bind(2, static_cast<int64_t>(rec->thin_id))
                               .Exec());
  auto forget = db_.Prepare("DELETE FROM grown_origins WHERE origin_thin_id = ?");
  if (!forget.ok()) return forget.status();
  THINSNAP_RETURN_IF_ERROR(forget->Bind(1, static_cast<int64_t>(rec->thin_id)).Exec());
  THINSNAP_RETURN_IF_ERROR(txn.Commit());
  visible_.Erase(rec->id);
  return intent;
}

Result<SnapshotRecord> Store::SetLabels(std::string_view key, const Labels& labels,
                                        int64_t now_ns) {
  std::lock_guard lock(mu_);
  Txn txn(db_);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  auto rec = GetByKeyLocked(key, true);
  if (!rec.ok()) return rec.status();
  auto up = db_.Prepare("UPDATE snapshots SET updated_ns = ? WHERE id = ?");
  if (!up.ok()) return up.status();
  THINSNAP_RETURN_IF_ERROR(up->Bind(1, now_ns).Bind(2, rec->id).Exec());
  THINSNAP_RETURN_IF_ERROR(WriteLabels(rec->id, labels));
  THINSNAP_RETURN_IF_ERROR(txn.Commit());
  rec->info.labels = labels;
  rec->info.updated_ns = now_ns;
  visible_.Put(*rec);
  return rec;
}

Result<std::vector<Intent>> Store::ListIntents() {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(
      "SELECT id, op, thin_id, COALESCE(snapshot_id, 0), may_own_blocks"
      " FROM intents ORDER BY id");
  if (!st.ok()) return st.status();
  std::vector<Intent> out;
  for (;;) {
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    Intent intent = MakeIntent(st->Int(0), static_cast<IntentOp>(st->Int(1)),
                               static_cast<ThinId>(st->Int(2)), st->Int(3));
    intent.may_own_blocks = st->Int(4) != 0;
    out.push_back(intent);
  }
}

Status Store::FinishIntents(const std::vector<int64_t>& intent_ids) {
  if (intent_ids.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  Txn txn(db_);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  for (int64_t id : intent_ids) THINSNAP_RETURN_IF_ERROR(DropIntentLocked(id));
  return txn.Commit();
}

Result<Intent> Store::RecordDelete(ThinId thin_id) {
  std::lock_guard lock(mu_);
  return InsertIntentLocked(IntentOp::kDelete, thin_id);
}

Result<ThinId> Store::ThinIdCursor() {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare("SELECT next_thin_id FROM thin_id_cursor");
  if (!st.ok()) return st.status();
  auto row = st->Step();
  if (!row.ok()) return row.status();
  return *row ? static_cast<ThinId>(st->Int(0)) : ThinId{0};
}

Result<std::vector<SnapshotRecord>> Store::ListByKind(Kind kind) {
  std::vector<SnapshotRecord> out;
  Status st = ForEach([&](const SnapshotRecord& r) {
    if (r.info.kind == kind) out.push_back(r);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Result<std::vector<ThinId>> Store::ThinIdsInUse() {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare(kThinIdsInUse);
  if (!st.ok()) return st.status();
  std::vector<ThinId> ids;
  for (;;) {
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return ids;
    ids.push_back(static_cast<ThinId>(st->Int(0)));
  }
}

Result<StoreCounts> Store::Counts() {
  std::lock_guard lock(mu_);
  auto st =
      db_.Prepare(std::string("SELECT"
                              " (SELECT COUNT(*) FROM snapshots WHERE ready = 1 AND kind = ?),"
                              " (SELECT COUNT(*) FROM snapshots WHERE ready = 1 AND kind = ?),"
                              " (SELECT COUNT(*) FROM snapshots WHERE ready = 1 AND kind = ?),"
                              " (SELECT COUNT(*) FROM (") +
                  kThinIdsInUse + ")), (SELECT COUNT(*) FROM intents WHERE op = ?)");
  if (!st.ok()) return st.status();
  st->Bind(1, static_cast<int64_t>(Kind::kActive))
      .Bind(2, static_cast<int64_t>(Kind::kView))
      .Bind(3, static_cast<int64_t>(Kind::kCommitted))
      .Bind(4, static_cast<int64_t>(IntentOp::kDelete));
  auto row = st->Step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::Internal("count query returned no row");
  return StoreCounts{st->Int(0), st->Int(1), st->Int(2), st->Int(3), st->Int(4)};
}

Result<std::optional<BaseDevice>> Store::GetBase() {
  std::lock_guard lock(mu_);
  auto st = db_.Prepare("SELECT thin_id, size_bytes, fs_type FROM base_device");
  if (!st.ok()) return st.status();
  auto row = st->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<BaseDevice>();
  return std::optional<BaseDevice>(
      BaseDevice{static_cast<ThinId>(st->Int(0)), static_cast<uint64_t>(st->Int(1)), st->Text(2)});
}

Result<Intent> Store::BeginCreateDevice(ThinId thin_id) {
  std::lock_guard lock(mu_);
  Txn txn(db_);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  auto intent = InsertIntentLocked(IntentOp::kCreate, thin_id);
  if (!intent.ok()) return intent.status();
  THINSNAP_RETURN_IF_ERROR(AdvanceCursorLocked(thin_id));
  THINSNAP_RETURN_IF_ERROR(txn.Commit());
  return intent;
}

Status Store::FinishCreateBase(const Intent& intent, const BaseDevice& base) {
  std::lock_guard lock(mu_);
  Txn txn(db_);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  auto ins = db_.Prepare(
      "INSERT INTO base_device (singleton, thin_id, size_bytes, fs_type) VALUES (1, ?, ?, ?)");
  if (!ins.ok()) return ins.status();
  THINSNAP_RETURN_IF_ERROR(ins->Bind(1, static_cast<int64_t>(base.thin_id))
                               .Bind(2, static_cast<int64_t>(base.size_bytes))
                               .Bind(3, base.fs_type)
                               .Exec());
  THINSNAP_RETURN_IF_ERROR(DropIntentLocked(intent.id));
  return txn.Commit();
}

Status Store::FinishGrownOrigin(const Intent& intent, const GrownOrigin& grown) {
  std::lock_guard lock(mu_);
  Txn txn(db_);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  auto ins = db_.Prepare(
      "INSERT INTO grown_origins (thin_id, origin_thin_id, size_bytes) VALUES (?, ?, ?)");
  if (!ins.ok()) return ins.status();
  THINSNAP_RETURN_IF_ERROR(ins->Bind(1, static_cast<int64_t>(grown.thin_id))
                               .Bind(2, static_cast<int64_t>(grown.origin_thin_id))
                               .Bind(3, static_cast<int64_t>(grown.size_bytes))
                               .Exec());
  THINSNAP_RETURN_IF_ERROR(DropIntentLocked(intent.id));
  return txn.Commit();
}

Result<std::vector<GrownOrigin>> Store::ListGrownOrigins() {
  std::lock_guard lock(mu_);
  auto st =
      db_.Prepare("SELECT thin_id, origin_thin_id, size_bytes FROM grown_origins ORDER BY thin_id");
  if (!st.ok()) return st.status();
  std::vector<GrownOrigin> out;
  for (;;) {
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    out.push_back({static_cast<ThinId>(st->Int(0)), static_cast<ThinId>(st->Int(1)),
                   static_cast<uint64_t>(st->Int(2))});
  }
}

Result<Intent> Store::RetireGrownOrigin(ThinId thin_id) {
  std::lock_guard lock(mu_);
  Txn txn(db_);
  THINSNAP_RETURN_IF_ERROR(txn.begin_status());
  auto del = db_.Prepare("DELETE FROM grown_origins WHERE thin_id = ?");
  if (!del.ok()) return del.status();
  THINSNAP_RETURN_IF_ERROR(del->Bind(1, static_cast<int64_t>(thin_id)).Exec());
  if (db_.Changes() == 0) {
    return Status::NotFound("thin id " + std::to_string(thin_id) + " is not a grown origin");
  }
  auto intent = InsertIntentLocked(IntentOp::kDelete, thin_id);
  if (!intent.ok()) return intent.status();
  THINSNAP_RETURN_IF_ERROR(txn.Commit());
  return intent;
}

}  // namespace thinsnap
