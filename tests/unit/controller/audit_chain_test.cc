// The keyed audit chain (HMAC under a key outside the data directory), its migration from
// unkeyed rows, truncation detected against a checkpoint, the audit key file, and the data
// directory's permissions.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/format.h"
#include "controller/store/audit_key.h"
#include "controller/store/data_dir.h"
#include "controller/store/sqlite_store.h"
#include "store_test_rows.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;

const std::string kKey(32, '\x11');
const std::string kOtherKey(32, '\x22');

mode_t modeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

class AuditChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-audit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ / "controller.db";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::unique_ptr<SqliteStore> open(const std::string& key) {
    auto s = SqliteStore::create(path_, {.audit_key = key});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  fs::path dir_;
  fs::path path_;
};

TEST_F(AuditChainTest, AnOldUnkeyedDatabaseMigratesWithAMarkerAndKeepsVerifying) {
  {
    // A database as the previous schema (v3) left it: no mac column.
    auto old = open("");
    testing::appendAuditRows(*old, 1, 4);
    ASSERT_TRUE(
        old->execForTest("ALTER TABLE audit DROP COLUMN mac; DROP TABLE signals; "
                         "DROP TABLE approvals; DROP TABLE integrations; "
                         "DROP TABLE join_tokens; DROP TABLE enrollments; DROP TABLE tenants; "
                         "DROP TABLE role_bindings; DROP TABLE host_labels; "
                         "DROP TABLE operator_enrollments; DROP INDEX audit_by_tenant; "
                         "ALTER TABLE audit DROP COLUMN tenant; DROP TABLE incidents; "
                         "DROP TABLE notifications; DROP TABLE notify_cursor; "
                         "DROP INDEX audit_by_incident; ALTER TABLE audit DROP COLUMN incident; "
                         "DROP INDEX captures_by_incident; "
                         "ALTER TABLE captures DROP COLUMN incident; "
                         "ALTER TABLE captures DROP COLUMN incident_tenant")
            .ok());
    ASSERT_TRUE(old->execForTest("PRAGMA user_version=3").ok());
  }
  {
    auto store = open(kKey);
    EXPECT_EQ(*store->schemaVersion(), SqliteStore::latestSchemaVersion());
    auto rows = store->listAudit(0);
    ASSERT_TRUE(rows.ok());
    ASSERT_EQ(rows->size(), 5u);
    const AuditEntry& marker = rows->back();
    EXPECT_EQ(marker.action, kAuditKeyedAction);
    EXPECT_EQ(marker.mac, auditRowMac(kKey, marker));
    EXPECT_NE(marker.detail.find(auditKeyId(kKey)), std::string::npos) << marker.detail;
    for (int i = 0; i < 4; ++i) EXPECT_EQ((*rows)[i].mac, "");
    testing::appendAuditRows(*store, 5, 6);
    auto v = store->verifyAudit();
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->ok) << v->problem;
    EXPECT_EQ(v->rows, 7);
    EXPECT_EQ(v->unkeyed_rows, 4);
  }
  {
    // Reopening does not add a second marker.
    auto store = open(kKey);
    EXPECT_EQ(store->listAudit(0)->size(), 7u);
    // An old, unkeyed row rewritten with every later hash recomputed: the marker's MAC, over
    // a hash that chains through the old rows, catches it.
    testing::rewriteAuditFrom(*store, 2);
    auto v = store->verifyAudit();
    ASSERT_TRUE(v.ok());
    EXPECT_FALSE(v->ok);
    EXPECT_EQ(v->first_bad_id, 5);
    EXPECT_NE(v->problem.find("MAC does not match"), std::string::npos) << v->problem;
  }
}

TEST_F(AuditChainTest, CommitsAreSyncedFull) {
  auto store = open(kKey);
  auto mode = store->pragmaForTest("synchronous");
  ASSERT_TRUE(mode.ok()) << mode.status();
  EXPECT_EQ(*mode, 2);  // FULL
}

// --- the audit key file ---

TEST_F(AuditChainTest, AuditKeyIsCreatedPrivateAndReadBack) {
  const fs::path key_path = dir_ / "identity" / "audit.key";
  auto key = loadOrCreateAuditKey(key_path, dir_ / "data");
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->size(), kAuditKeyBytes);
  EXPECT_EQ(modeOf(key_path), 0600);
  auto again = loadOrCreateAuditKey(key_path, dir_ / "data");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *key);
}

TEST_F(AuditChainTest, AuditKeyFileIsRefusedWhenExposedOrInsideTheDataDir) {
  const fs::path key_path = dir_ / "audit.key";
  ASSERT_TRUE(loadOrCreateAuditKey(key_path, dir_ / "data").ok());
  fs::permissions(key_path, fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  auto open_key = loadOrCreateAuditKey(key_path, dir_ / "data");
  ASSERT_FALSE(open_key.ok());
  EXPECT_NE(std::string(open_key.status().message()).find("chmod 600"), std::string::npos)
      << open_key.status();
  auto inside = loadOrCreateAuditKey(dir_ / "data" / "audit.key", dir_ / "data");
  ASSERT_FALSE(inside.ok());
  EXPECT_NE(std::string(inside.status().message()).find("inside --data-dir"), std::string::npos)
      << inside.status();
  EXPECT_FALSE(fs::exists(dir_ / "data" / "audit.key"));
  fs::create_symlink(key_path, dir_ / "link.key");
  EXPECT_FALSE(loadOrCreateAuditKey(dir_ / "link.key", dir_ / "data").ok());
}

TEST_F(AuditChainTest, AuditKeyTextMustBe64HexDigits) {
  std::string text(64, 'a');
  text += '\n';  // not std::string + "\n": gcc 12 reports a false -Warray-bounds for that
  auto ok = parseAuditKey(text, "k");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, std::string(32, '\xaa'));
  for (const std::string& bad : {std::string(), std::string(62, 'a'), std::string(64, 'g')}) {
    auto r = parseAuditKey(bad, "/etc/k");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(std::string(r.status().message()).find("/etc/k"), std::string::npos);
  }
}

// --- the data directory ---

TEST_F(AuditChainTest, DataDirAndEverythingInItBecomePrivate) {
  const fs::path data = dir_ / "data";
  fs::create_directories(data / "evidence" / "ab");
  ASSERT_EQ(::chmod(data.c_str(), 0755), 0);
  ASSERT_EQ(::chmod((data / "evidence").c_str(), 0755), 0);
  for (const auto& f : {data / "controller.db", data / "controller.db-wal",
                        data / "controller.db-shm", data / "evidence" / "ab" / "ab12.tar.gz"}) {
    std::ofstream(f) << "x";
    ASSERT_EQ(::chmod(f.c_str(), 0644), 0);
  }
  std::ofstream(dir_ / "outside") << "x";
  ASSERT_EQ(::chmod((dir_ / "outside").c_str(), 0644), 0);
  fs::create_symlink(dir_ / "outside", data / "link");
  ASSERT_TRUE(prepareDataDir(data).ok());
  EXPECT_EQ(modeOf(data), 0700);
  EXPECT_EQ(modeOf(data / "evidence"), 0700);
  EXPECT_EQ(modeOf(data / "evidence" / "ab"), 0700);
  EXPECT_EQ(modeOf(data / "controller.db"), 0600);
  EXPECT_EQ(modeOf(data / "controller.db-wal"), 0600);
  EXPECT_EQ(modeOf(data / "controller.db-shm"), 0600);
  EXPECT_EQ(modeOf(data / "evidence" / "ab" / "ab12.tar.gz"), 0600);
  EXPECT_EQ(modeOf(dir_ / "outside"), 0644);  // a symlink's target is left alone
}

TEST_F(AuditChainTest, DataDirIsCreatedPrivateAndAFileIsRefused) {
  ASSERT_TRUE(prepareDataDir(dir_ / "new" / "data").ok());
  EXPECT_EQ(modeOf(dir_ / "new" / "data"), 0700);
  std::ofstream(dir_ / "file") << "x";
  auto s = prepareDataDir(dir_ / "file");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("not a directory"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::controller
