// A small RAII layer over sqlite3: one connection (Db), prepared statements
// (Stmt) and scoped transactions (Txn). No raw sqlite handle leaves this file.
//
// Db keeps every statement it prepared, keyed by its SQL, and hands the same
// compiled statement out again once the last user is done with it: parsing
// and planning cost more than running most of thinsnap's one-row statements.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace thinsnap {

class Stmt {
 public:
  // With `in_use`, the statement belongs to Db's cache: it is reset and handed
  // back (by clearing *in_use) on destruction instead of finalized.
  Stmt(sqlite3* db, sqlite3_stmt* stmt, bool* in_use = nullptr)
      : db_(db), stmt_(stmt), in_use_(in_use) {}
  Stmt(Stmt&& other) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  // Binds are 1-based, as in SQL.
  Stmt& Bind(int index, int64_t value);
  Stmt& Bind(int index, std::string_view text);  // bound as a BLOB-exact TEXT
  Stmt& BindNull(int index);

  // Advances: true when a row is available, false when done.
  Result<bool> Step();
  // Runs a statement that returns no rows.
  Status Exec();
  // Makes the statement runnable again with new bindings.
  void Reset();

  int64_t Int(int col) const;
  bool IsNull(int col) const;
  std::string Text(int col) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  bool* in_use_;
};

class Db {
 public:
  // Opens (creating if needed) the database at `path` (":memory:" allowed).
  static Result<Db> Open(const std::string& path);
  Db(Db&& other) noexcept;
  Db& operator=(Db&&) = delete;
  Db(const Db&) = delete;
  ~Db();

  // Runs one or more statements, uncached (schema changes, PRAGMAs).
  Status Exec(const std::string& sql);
  // One statement, from the cache when it is not in use already (a statement
  // can be prepared again while an earlier Stmt of it is still stepping).
  Result<Stmt> Prepare(std::string_view sql);
  int64_t LastInsertId() const;
  int Changes() const;

 private:
  struct Cached {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  explicit Db(sqlite3* db) : db_(db), cache_(std::make_unique<Cache>()) {}
  sqlite3* db_;
  // Behind a pointer so that a moved Db keeps its entries where their Stmts
  // point.
  using Cache = std::unordered_map<std::string, Cached>;
  std::unique_ptr<Cache> cache_;
};

// Maps a sqlite result code to a Status; constraint violations become
// AlreadyExists (UNIQUE) or FailedPrecondition (FOREIGN KEY).
Status SqliteStatus(sqlite3* db, int rc, std::string_view what);

// How a commit reaches the disk. The connection runs in WAL mode with
// synchronous=FULL, so by default a commit is fsynced before it returns.
enum class Sync {
  kDurable,
  // Written to the WAL but not fsynced: a kill -9 keeps it (the page cache
  // survives), a power cut may lose it. It is never lost while a later
  // transaction survives, since the WAL is replayed in order, and the next
  // kDurable commit makes it durable too. For records whose loss the next
  // start repairs anyway, e.g. an intent written before a pool change.
  kOrdered,
};

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless Commit().
// SQLite takes the sync setting only outside a transaction, so it is chosen
// here rather than at Commit().
class Txn {
 public:
  explicit Txn(Db& db, Sync sync = Sync::kDurable);
  ~Txn();
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  const Status& begin_status() const { return begin_; }
  Status Commit();

 private:
  // Ends the transaction with `sql` (COMMIT or ROLLBACK), then restores FULL.
  Status End(const char* sql);

  Db& db_;
  const Sync sync_;
  Status begin_;
  bool done_ = false;
};

}  // namespace thinsnap
