#include "metadata/sqlite_db.h"

#include <sqlite3.h>

#include <utility>

namespace thinsnap {

Status SqliteStatus(sqlite3* db, int rc, std::string_view what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return Status::Ok();
  std::string msg = std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  int ext = db ? sqlite3_extended_errcode(db) : rc;
  switch (ext) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return Status::AlreadyExists(msg);
    case SQLITE_CONSTRAINT_FOREIGNKEY:
    case SQLITE_CONSTRAINT_TRIGGER:
      return Status::FailedPrecondition(msg);
    default:
      break;
  }
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) return Status::Unavailable(msg);
  if ((rc & 0xff) == SQLITE_FULL) return Status::ResourceExhausted(msg);
  return Status::Internal(msg);
}

Stmt::Stmt(Stmt&& other) noexcept
    : db_(other.db_),
      stmt_(std::exchange(other.stmt_, nullptr)),
      in_use_(std::exchange(other.in_use_, nullptr)) {}

Stmt::~Stmt() {
  if (in_use_ == nullptr) {
    sqlite3_finalize(stmt_);
    return;
  }
  Reset();
  *in_use_ = false;
}

Stmt& Stmt::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Stmt& Stmt::Bind(int index, std::string_view text) {
  // Keys are opaque bytes: bind with an explicit length so nothing is cut.
  sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  return *this;
}

Stmt& Stmt::BindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteStatus(db_, rc, "sqlite step");
}

Status Stmt::Exec() {
  auto r = Step();
  return r.ok() ? Status::Ok() : r.status();
}

void Stmt::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Stmt::Int(int col) const { return sqlite3_column_int64(stmt_, col); }

bool Stmt::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

std::string Stmt::Text(int col) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
  return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
}

Result<Db> Db::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);  // owns `raw` even on failure
  if (rc != SQLITE_OK) return SqliteStatus(raw, rc, "open " + path);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 5000);
  return db;
}

Db::Db(Db&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), cache_(std::move(other.cache_)) {}

Db::~Db() {
  if (cache_) {
    for (auto& [sql, cached] : *cache_) sqlite3_finalize(cached.stmt);
  }
  sqlite3_close_v2(db_);
}

Status Db::Exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);
  return SqliteStatus(db_, rc, "exec");
}

Result<Stmt> Db::Prepare(std::string_view sql) {
  auto [it, fresh] = cache_->try_emplace(std::string(sql));
  Cached& cached = it->second;
  if (!fresh && !cached.in_use) {
    cached.in_use = true;
    return Stmt(db_, cached.stmt, &cached.in_use);
  }
  sqlite3_stmt* stmt = nullptr;
  const unsigned flags = fresh ? SQLITE_PREPARE_PERSISTENT : 0;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), flags, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    if (fresh) cache_->erase(it);
    return SqliteStatus(db_, rc, "prepare");
  }
  if (!fresh) return Stmt(db_, stmt);  // the cached one is busy: a private copy
  cached = {stmt, true};
  return Stmt(db_, stmt, &cached.in_use);
}

int64_t Db::LastInsertId() const { return sqlite3_last_insert_rowid(db_); }

int Db::Changes() const { return sqlite3_changes(db_); }

namespace {

Status Run(Db& db, std::string_view sql) {
  auto st = db.Prepare(sql);
  return st.ok() ? st->Exec() : st.status();
}

}  // namespace

Txn::Txn(Db& db, Sync sync) : db_(db), sync_(sync) {
  if (sync_ == Sync::kOrdered) begin_ = Run(db_, "PRAGMA synchronous=NORMAL");
  if (begin_.ok()) begin_ = Run(db_, "BEGIN IMMEDIATE");
  if (!begin_.ok()) {
    done_ = true;
    if (sync_ == Sync::kOrdered) (void)Run(db_, "PRAGMA synchronous=FULL");
  }
}

Txn::~Txn() {
  if (!done_) (void)End("ROLLBACK");
}

Status Txn::End(const char* sql) {
  done_ = true;
  Status st = Run(db_, sql);
  if (!st.ok()) (void)Run(db_, "ROLLBACK");
  if (sync_ == Sync::kOrdered) {
    Status full = Run(db_, "PRAGMA synchronous=FULL");
    if (st.ok()) st = full;
  }
  return st;
}

Status Txn::Commit() { return End("COMMIT"); }

}  // namespace thinsnap
