// The evidence tables of the SQLite store: captures, bundles, per-bundle custody chains
// (append, verify, tampering detected), id prefix resolution, migration from schema 2; and the
// content-addressed evidence files.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "controller/store/evidence_files.h"
#include "controller/store/sqlite_store.h"
#include "store_test_rows.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;

const std::string kId1 = std::string(64, 'a');
const std::string kId2 = "aaaaaaaa" + std::string(56, 'b');  // shares 8 digits with kId1
const std::string kId3 = std::string(64, 'c');

class EvidenceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-evstore-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ / "controller.db";
    store_ = open();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::unique_ptr<SqliteStore> open() {
    auto s = SqliteStore::create(path_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  void addBundle(const std::string& id, const std::string& capture_id) {
    testing::addBundle(*store_, id, capture_id, "web-03", kId3);
  }
  fs::path dir_;
  fs::path path_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(EvidenceStoreTest, MigratesASchema2DatabaseKeepingItsRows) {
  AuditEntry e{.at_unix_ms = 1,
               .operator_name = "alice",
               .action = "isolate",
               .target = "h1",
               .outcome = "ok"};
  ASSERT_TRUE(store_->appendAudit(e).ok());
  ASSERT_TRUE(store_->saveHosts({HostInfo{.host_id = "old-01"}}, {}, {}).ok());
  // Back to what schema 2 left: no evidence tables.
  ASSERT_TRUE(
      store_
          ->execForTest(
              "DROP TABLE captures; DROP TABLE evidence; DROP TABLE custody; DROP TABLE signals; "
              "DROP TABLE approvals; DROP TABLE integrations; DROP TABLE join_tokens; "
              "DROP TABLE enrollments; DROP TABLE tenants; DROP TABLE role_bindings; "
              "DROP TABLE host_labels; DROP TABLE operator_enrollments; DROP INDEX "
              "audit_by_tenant; DROP TABLE incidents; DROP INDEX audit_by_incident; "
              "DROP TABLE notifications; DROP TABLE notify_cursor; "
              "ALTER TABLE audit DROP COLUMN incident; "
              "ALTER TABLE audit DROP COLUMN tenant; "
              "ALTER TABLE audit DROP COLUMN mac; PRAGMA user_version=2")
          .ok());
  store_.reset();
  store_ = open();
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(*store_->schemaVersion(), SqliteStore::latestSchemaVersion());
  EXPECT_EQ(store_->listAudit(0)->size(), 1u);
  EXPECT_TRUE(store_->verifyAudit()->ok);
  EXPECT_EQ(store_->loadHosts()->size(), 1u);
  EXPECT_TRUE(store_->listEvidence("")->empty());
  addBundle(kId1, "cap-1");
  store_.reset();
  store_ = open();  // and the evidence survives a reopen
  EXPECT_TRUE(store_->verifyCustody(kId1)->ok);
}

TEST_F(EvidenceStoreTest, FilesAreStoredOnceUnderTheirHash) {
  EvidenceFiles files(dir_ / "evidence");
  ASSERT_TRUE(files.init().ok());
  {
    std::ofstream stale(dir_ / "evidence" / "incoming" / "cap-old.1234.part");
    stale << "partial";
  }
  ASSERT_TRUE(files.init().ok());  // removes the stale part
  EXPECT_TRUE(fs::is_empty(dir_ / "evidence" / "incoming"));
  std::string id;
  for (int i = 0; i < 2; ++i) {
    auto part = files.createPart("cap/../1");
    ASSERT_TRUE(part.ok()) << part.status();
    EXPECT_EQ((*part)->path().parent_path(), dir_ / "evidence" / "incoming");
    ASSERT_TRUE((*part)->write("hello ").ok());
    ASSERT_TRUE((*part)->write("evidence").ok());
    id = (*part)->finishHash();
    EXPECT_EQ(id, *sha256OfFile((*part)->path()));
    ASSERT_TRUE((*part)->syncAndClose().ok());
    bool existed = true;
    ASSERT_TRUE(files.commit(**part, id, &existed).ok());
    EXPECT_EQ(existed, i == 1);
  }
  EXPECT_TRUE(fs::exists(files.absolute(EvidenceFiles::relativePath(id))));
  EXPECT_TRUE(fs::is_empty(dir_ / "evidence" / "incoming"));
  {
    auto dropped = files.createPart("cap-2");
    ASSERT_TRUE(dropped.ok());
    ASSERT_TRUE((*dropped)->write("x").ok());
  }  // never committed: removed
  EXPECT_TRUE(fs::is_empty(dir_ / "evidence" / "incoming"));
}

}  // namespace
}  // namespace bulkhead::controller
