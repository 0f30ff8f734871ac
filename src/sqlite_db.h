// A small RAII layer over sqlite3: one connection (Db), prepared statements
// (Stmt) and scoped transactions (Txn). No raw sqlite handle leaves this file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace thinsnap {

class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
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
};

class Db {
 public:
  // Opens (creating if needed) the database at `path` (":memory:" allowed).
  static Result<Db> Open(const std::string& path);
  Db(Db&& other) noexcept;
  Db& operator=(Db&&) = delete;
  Db(const Db&) = delete;
  ~Db();

  Status Exec(const std::string& sql);
  Result<Stmt> Prepare(std::string_view sql);
  int64_t LastInsertId() const;
  int Changes() const;

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// Maps a sqlite result code to a Status; constraint violations become
// AlreadyExists (UNIQUE) or FailedPrecondition (FOREIGN KEY).
Status SqliteStatus(sqlite3* db, int rc, std::string_view what);

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless Commit().
class Txn {
 public:
  explicit Txn(Db& db);
  ~Txn();
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  const Status& begin_status() const { return begin_; }
  Status Commit();

 private:
  Db& db_;
  Status begin_;
  bool done_ = false;
};

}  // namespace thinsnap
