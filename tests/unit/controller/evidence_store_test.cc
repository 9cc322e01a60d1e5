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
  static CaptureRow capture(const std::string& id, const std::string& host = "web-03") {
    return CaptureRow{.capture_id = id,
                      .host_id = host,
                      .requested_by = "alice",
                      .reason = "INC-42",
                      .requested_at_unix_ms = 1000,
                      .command_id = "capture-" + id};
  }
  // Stores bundle `id` of capture `capture_id` with its three first custody events.
  void addBundle(const std::string& id, const std::string& capture_id,
                 const std::string& host = "web-03") {
    ASSERT_TRUE(store_->addCapture(capture(capture_id, host)).ok());
    EvidenceRow r{.id = id,
                  .capture_id = capture_id,
                  .host_id = host,
                  .requested_by = "alice",
                  .reason = "INC-42",
                  .requested_at_unix_ms = 1000,
                  .collected_at_unix_ms = 2000,
                  .received_at_unix_ms = 3000,
                  .size = 123,
                  .manifest_sha256 = kId3,
                  .files = 7,
                  .signature_ok = true,
                  .collector_errors = {"btmp: timeout"},
                  .file_name = capture_id + ".tar.gz",
                  .clock_offset_ms = -5,
                  .path = EvidenceFiles::relativePath(id)};
    std::vector<CustodyEntry> events(3);
    events[0] = {.at_unix_ms = 1000, .actor = "alice", .action = "requested", .detail = "INC-42"};
    events[1] = {.at_unix_ms = 2000, .actor = "agent:" + host, .action = "collected"};
    events[2] = {.at_unix_ms = 3000, .actor = "agent:" + host, .action = "received"};
    auto added = store_->addEvidence(r, events);
    ASSERT_TRUE(added.ok()) << added.status();
    ASSERT_EQ(added->size(), 3u);
  }
  fs::path dir_;
  fs::path path_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(EvidenceStoreTest, CaptureThenEvidenceThenCustodyChainVerifies) {
  addBundle(kId1, "cap-1");
  auto cap = store_->getCapture("cap-1");
  ASSERT_TRUE(cap.ok());
  EXPECT_EQ(cap->state, "received");
  auto row = store_->getEvidence(kId1);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->capture_id, "cap-1");
  EXPECT_EQ(row->files, 7u);
  EXPECT_TRUE(row->signature_ok);
  EXPECT_EQ(row->clock_offset_ms, -5);
  EXPECT_EQ(row->collector_errors, std::vector<std::string>{"btmp: timeout"});
  EXPECT_EQ(row->path, "aa/" + kId1 + ".tar.gz");
  auto get = store_->appendCustody(
      {.evidence_id = kId1, .at_unix_ms = 4000, .actor = "bob", .action = "get"});
  ASSERT_TRUE(get.ok()) << get.status();
  auto custody = store_->listCustody(kId1);
  ASSERT_TRUE(custody.ok());
  ASSERT_EQ(custody->size(), 4u);
  EXPECT_EQ((*custody)[0].prev_hash, kId1);  // the chain starts at the evidence id
  EXPECT_EQ((*custody)[0].action, "requested");
  for (size_t i = 1; i < custody->size(); ++i) {
    EXPECT_EQ((*custody)[i].prev_hash, (*custody)[i - 1].hash);
  }
  EXPECT_EQ((*custody)[3].actor, "bob");
  EXPECT_EQ((*custody)[3].hash, custodyEventHash((*custody)[3]));
  auto v = store_->verifyCustody(kId1);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->events, 4);
  auto found = store_->evidenceForCapture("cap-1");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, kId1);
  EXPECT_FALSE(store_->evidenceForCapture("cap-none")->has_value());
}

TEST_F(EvidenceStoreTest, TamperedOrRemovedCustodyEventsAreDetected) {
  addBundle(kId1, "cap-1");
  addBundle(kId3, "cap-3");
  ASSERT_TRUE(store_->appendCustody({.evidence_id = kId1, .actor = "bob", .action = "get"}).ok());
  ASSERT_TRUE(
      store_->execForTest("UPDATE custody SET actor = 'mallory' WHERE action = 'get'").ok());
  auto v = store_->verifyCustody(kId1);
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_NE(v->problem.find("(get)"), std::string::npos) << v->problem;
  EXPECT_NE(v->problem.find("altered"), std::string::npos) << v->problem;
  EXPECT_TRUE(store_->verifyCustody(kId3)->ok);  // chains are per bundle
  // Removing the "collected" event of the other bundle breaks the link of "received".
  ASSERT_TRUE(store_
                  ->execForTest("DELETE FROM custody WHERE evidence_id = '" + kId3 +
                                "' AND action = 'collected'")
                  .ok());
  v = store_->verifyCustody(kId3);
  EXPECT_FALSE(v->ok);
  EXPECT_NE(v->problem.find("(received)"), std::string::npos) << v->problem;
}

TEST_F(EvidenceStoreTest, IdsResolveByUniquePrefix) {
  addBundle(kId1, "cap-1");
  addBundle(kId2, "cap-2");
  addBundle(kId3, "cap-3", "db-01");
  EXPECT_EQ(store_->getEvidence("CCCCCCCC")->id, kId3);  // case-insensitive
  EXPECT_EQ(store_->getEvidence("aaaaaaaaa")->id, kId1);
  auto ambiguous = store_->getEvidence("aaaaaaaa");
  EXPECT_EQ(ambiguous.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ambiguous.status().message().find("ambiguous"), std::string::npos);
  EXPECT_NE(ambiguous.status().message().find("aaaaaaaa"), std::string::npos);
  auto unknown = store_->getEvidence("dddddddd");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(), "no evidence with id dddddddd");
  EXPECT_EQ(store_->getEvidence("abc").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->getEvidence("zzzzzzzzzz").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->listEvidence("")->size(), 3u);
  EXPECT_EQ(store_->listEvidence("db-01")->size(), 1u);
  EXPECT_EQ(
      store_->appendCustody({.evidence_id = kId3.substr(1) + "d", .action = "get"}).status().code(),
      absl::StatusCode::kNotFound);
}

TEST_F(EvidenceStoreTest, DuplicatesAreRefusedAndChangeNothing) {
  addBundle(kId1, "cap-1");
  EXPECT_EQ(store_->addCapture(capture("cap-1")).code(), absl::StatusCode::kAlreadyExists);
  EvidenceRow again{.id = kId1, .capture_id = "cap-1", .host_id = "web-03"};
  auto r = store_->addEvidence(again, {CustodyEntry{.action = "received"}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->listCustody(kId1)->size(), 3u);
  EXPECT_EQ(store_->getCapture("cap-x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->setCaptureState("cap-1", "timeout").ok());
  EXPECT_EQ(store_->setCaptureState("cap-x", "timeout").code(), absl::StatusCode::kNotFound);
}

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
