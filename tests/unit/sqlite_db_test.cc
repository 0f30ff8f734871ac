#include "metadata/sqlite_db.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace thinsnap {
namespace {

class SqliteDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thinsnap-sqlite-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static int64_t Scalar(Db& db, const std::string& sql) {
    auto st = db.Prepare(sql);
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    auto row = st->Step();
    EXPECT_TRUE(row.ok() && *row) << sql;
    return st->Int(0);
  }

  std::string dir_, path_;
};

TEST_F(SqliteDbTest, CachedStatementIsReusedAndRebound) {
  auto db = Db::Open(":memory:");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE t (v INTEGER)").ok());
  for (int64_t v = 1; v <= 3; ++v) {
    auto ins = db->Prepare("INSERT INTO t (v) VALUES (?)");
    ASSERT_TRUE(ins.ok());
    ASSERT_TRUE(ins->Bind(1, v).Exec().ok());
  }
  EXPECT_EQ(Scalar(*db, "SELECT SUM(v) FROM t"), 6);
}

// A statement still stepping is not handed out again: the second user gets a
// private copy, and both read their own rows.
TEST_F(SqliteDbTest, StatementInUseIsNotSharedWhileStepping) {
  auto db = Db::Open(":memory:");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2);").ok());
  const std::string sql = "SELECT v FROM t ORDER BY v";
  auto outer = db->Prepare(sql);
  ASSERT_TRUE(outer.ok());
  ASSERT_TRUE(*outer->Step());
  EXPECT_EQ(outer->Int(0), 1);
  {
    auto inner = db->Prepare(sql);
    ASSERT_TRUE(inner.ok());
    ASSERT_TRUE(*inner->Step());
    EXPECT_EQ(inner->Int(0), 1);
  }
  ASSERT_TRUE(*outer->Step());
  EXPECT_EQ(outer->Int(0), 2);
}

// An ordered (unsynced) commit is still a commit: visible, kept across a
// reopen, and the connection is back to synchronous=FULL after it.
TEST_F(SqliteDbTest, OrderedCommitIsKeptAndRestoresFullSync) {
  {
    auto db = Db::Open(path_);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;").ok());
    ASSERT_TRUE(db->Exec("CREATE TABLE t (v INTEGER)").ok());
    Txn txn(*db, Sync::kOrdered);
    ASSERT_TRUE(txn.begin_status().ok());
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (7)").ok());
    ASSERT_TRUE(txn.Commit().ok());
    EXPECT_EQ(Scalar(*db, "PRAGMA synchronous"), 2);  // FULL
  }
  auto db = Db::Open(path_);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(Scalar(*db, "SELECT v FROM t"), 7);
}

}  // namespace
}  // namespace thinsnap
