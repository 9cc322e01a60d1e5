// The SQLite plumbing: cached statements behave like fresh ones.
#include "controller/store/sqlite_db.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace bulkhead::controller::sqlite {
namespace {

namespace fs = std::filesystem;

class StmtCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = fs::temp_directory_path() /
            ("bh-sqlite-db-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db");
    auto db = open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
    ASSERT_TRUE(exec(db_.get(), "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)").ok());
  }
  void TearDown() override {
    db_.reset();
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path_.string() + suffix);
  }
  absl::Status insert(int64_t k, const std::string& v) {
    Stmt st(db_.get(), "INSERT INTO t(k, v) VALUES(?1, ?2)");
    if (auto s = st.prepared(); !s.ok()) return s;
    st.bind(1, k);
    st.bind(2, v);
    return st.run();
  }
  int64_t count() {
    Stmt st(db_.get(), "SELECT count(*) FROM t");
    EXPECT_EQ(st.step(), SQLITE_ROW);
    return st.i64(0);
  }

  fs::path path_;
  Connection db_;
};

TEST_F(StmtCacheTest, AReusedStatementStartsWithoutTheLastBindingsOrResults) {
  ASSERT_TRUE(insert(1, "one").ok());
  ASSERT_TRUE(insert(2, "two").ok());
  EXPECT_FALSE(insert(2, "again").ok());  // the constraint still applies
  EXPECT_EQ(count(), 2);
  {
    Stmt st(db_.get(), "SELECT v FROM t WHERE k = ?1");
    st.bind(1, int64_t{2});
    ASSERT_EQ(st.step(), SQLITE_ROW);
    EXPECT_EQ(st.text(0), "two");
  }
  Stmt st(db_.get(), "SELECT v FROM t WHERE k = ?1");
  EXPECT_EQ(st.step(), SQLITE_DONE);  // ?1 unbound again: NULL matches nothing
}

TEST_F(StmtCacheTest, TheSameSqlTwiceAtOnceGetsTwoStatements) {
  ASSERT_TRUE(insert(1, "one").ok());
  ASSERT_TRUE(insert(2, "two").ok());
  Stmt outer(db_.get(), "SELECT k FROM t ORDER BY k");
  ASSERT_EQ(outer.step(), SQLITE_ROW);
  EXPECT_EQ(outer.i64(0), 1);
  {
    Stmt inner(db_.get(), "SELECT k FROM t ORDER BY k");
    ASSERT_EQ(inner.step(), SQLITE_ROW);
    EXPECT_EQ(inner.i64(0), 1);
  }
  ASSERT_EQ(outer.step(), SQLITE_ROW);  // the inner one did not reset it
  EXPECT_EQ(outer.i64(0), 2);
}

TEST_F(StmtCacheTest, AReadLeftUnfinishedDoesNotHoldItsSnapshot) {
  ASSERT_TRUE(insert(1, "one").ok());
  ASSERT_TRUE(insert(2, "two").ok());
  {
    Stmt st(db_.get(), "SELECT k FROM t ORDER BY k");
    ASSERT_EQ(st.step(), SQLITE_ROW);  // left after the first row
  }
  // A second connection writes; this one sees it (no read transaction was left open).
  auto other = open(path_);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(exec(other->get(), "INSERT INTO t(k, v) VALUES(3, 'three')").ok());
  EXPECT_EQ(count(), 3);
  EXPECT_EQ(sqlite3_get_autocommit(db_.get()), 1);
}

TEST_F(StmtCacheTest, AStatementOnADroppedTableFailsAtItsStep) {
  ASSERT_TRUE(insert(1, "one").ok());
  ASSERT_TRUE(exec(db_.get(), "DROP TABLE t").ok());
  Stmt st(db_.get(), "INSERT INTO t(k, v) VALUES(?1, ?2)");
  absl::Status s = st.prepared();
  if (s.ok()) s = st.run();
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace bulkhead::controller::sqlite
