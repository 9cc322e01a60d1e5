#include "controller/store/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ / "controller.db";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::unique_ptr<SqliteStore> open() {
    auto s = SqliteStore::create(path_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  fs::path dir_;
  fs::path path_;
};

TEST_F(SqliteStoreTest, MigratesAnEmptyFileToTheLatestSchemaInWalMode) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  auto v = store->schemaVersion();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, SqliteStore::latestSchemaVersion());
  EXPECT_GE(*v, 2);
  store.reset();
  // Inspect the file with a separate connection.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  for (const char* table : {"hosts", "audit", "desired_state", "tamper_events"}) {
    std::string sql = std::string("SELECT count(*) FROM ") + table;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << table;
  }
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, MigratesAVersion1DatabaseKeepingItsRows) {
  {
    // A database as the first schema left it.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    const char* v1 = R"sql(
      CREATE TABLE hosts(host_id TEXT PRIMARY KEY NOT NULL, hostname TEXT NOT NULL DEFAULT '',
        addresses TEXT NOT NULL DEFAULT '[]', labels TEXT NOT NULL DEFAULT '{}',
        os TEXT NOT NULL DEFAULT '', agent_version TEXT NOT NULL DEFAULT '',
        first_seen_unix_ms INTEGER NOT NULL DEFAULT 0, last_seen_unix_ms INTEGER NOT NULL DEFAULT 0,
        enforced_generation INTEGER NOT NULL DEFAULT 0, ruleset_hash TEXT NOT NULL DEFAULT '');
      CREATE TABLE audit(id INTEGER PRIMARY KEY, at_unix_ms INTEGER NOT NULL,
        operator TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL,
        outcome TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
      CREATE TABLE desired_state(host_id TEXT PRIMARY KEY NOT NULL, generation INTEGER NOT NULL,
        state BLOB NOT NULL);
      INSERT INTO hosts(host_id, hostname, labels) VALUES('old-01', 'old', '{"role":"db"}');
      PRAGMA user_version=1;)sql";
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  auto store = open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->schemaVersion(), SqliteStore::latestSchemaVersion());
  auto hosts = store->loadHosts();
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 1u);
  EXPECT_EQ((*hosts)[0].labels.at("role"), "db");
}

TEST_F(SqliteStoreTest, RefusesADatabaseFromANewerVersion) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=999", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = SqliteStore::create(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("999"), std::string::npos);
}

TEST_F(SqliteStoreTest, UnwritableLocationIsAClearError) {
  auto s = SqliteStore::create(dir_ / "missing-subdir" / "controller.db");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("missing-subdir"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::controller
