// The stored format of the audit and custody chains, pinned: the hash and MAC of known rows
// and events, as every database written so far holds them. A row appended today must hash
// to the same value, and rows written with these values (an existing database) must verify.
#include <gtest/gtest.h>

#include "common/format.h"
#include "controller/store/sqlite_store.h"
#include "evidence/hash.h"
#include "tests/unit/evidence/evidence_testing.h"

namespace bulkhead::controller {
namespace {

const std::string kKey(32, '\x11');
const std::string kEvidenceId(64, 'e');

// Three audit rows; the third has bytes that are neither printable nor UTF-8, and a field
// that holds the encoding's separators.
std::vector<AuditEntry> auditRows() {
  return {
      {.at_unix_ms = 1700000000001,
       .operator_name = "alice",
       .action = "isolate",
       .target = "web-01",
       .reason = "INC-42",
       .outcome = "ok",
       .detail = "generation 3"},
      {.at_unix_ms = 1700000000002,
       .operator_name = "controller",
       .action = "isolate.result",
       .target = "web-01",
       .outcome = "ok"},
      {.at_unix_ms = -5,
       .operator_name = "agent:db-01",
       .action = "evidence-received",
       .target = "3:abc;",
       .reason = std::string("\xff\x00\n", 3),
       .outcome = "error: x",
       .detail = "\xc3\xa9t\xc3\xa9"},
  };
}

// Hash and MAC of auditRows() appended in order to an empty table under kKey (the first row's
// values recomputed independently with Python's hashlib and hmac, as README.md's recipe does).
struct Pinned {
  const char* hash;
  const char* mac;
};
const Pinned kAuditPinned[] = {
    {"1e75e234f211d7f4663bfeae4f63a881cefc88718fedb52381c5a53d0e4ba5d7",
     "3ded7857d87c907f8ccce65213a22023363820780766d0d001b90355d8d2c716"},
    {"83ecd10e9fe38355a08b914fcfd1f91edc94b9d44251cb56556d18d53fc9dfc5",
     "3eb1efa8835aed0106d034753a792695317a1a50e4fdf0833a42fabf0e2dde2c"},
    {"2e32791e18c6f1f60218e4ac2182093826bdd02290c30e8f89c423c5081a5e73",
     "3e0ec3da9680c9c5ce88c51561f93e89aa9d4008bf5785e71e75480ddf6b16a7"},
};

std::vector<CustodyEntry> custodyEvents() {
  return {
      {.at_unix_ms = 1000, .actor = "alice", .action = "requested", .detail = "INC-42"},
      {.at_unix_ms = 2000, .actor = "agent:web-03", .action = "collected"},
      {.at_unix_ms = 3000,
       .actor = "agent:web-03",
       .action = "received",
       .detail = std::string("signature ok\n\x01", 14)},
  };
}

// Hashes of custodyEvents() chained to bundle kEvidenceId.
const char* const kCustodyPinned[] = {
    "beaa30d9de96eb6f2feb0cacd19fe6047628d1364997a958996db87fc88d9641",
    "54791989a40d7dee1ceb2bfbb16baccfd87a11c6499e7235f72287f4ec9b0460",
    "5ee80defc753fed6b6b55ad1b00622e0718d72d43a81d1c8f36e98db700131df",
};

class ChainFormatTest : public ::testing::Test {
 protected:
  std::unique_ptr<SqliteStore> open(const std::string& name, const std::string& key) {
    auto s = SqliteStore::create(dir_ / name, {.audit_key = key});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  static std::string hexOf(const std::string& bytes) {
    return evidence::toHex(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  }
  evidence::testing::TempDir dir_;
};

TEST_F(ChainFormatTest, AuditRowsHashAndMacAsPinned) {
  auto store = open("a.db", kKey);
  ASSERT_NE(store, nullptr);
  std::string prev = kAuditGenesisHash;
  int64_t id = 0;
  for (size_t i = 0; i < std::size(kAuditPinned); ++i) {
    auto row = store->appendAudit(auditRows()[i]);
    ASSERT_TRUE(row.ok()) << row.status();
    EXPECT_EQ(row->id, ++id);
    EXPECT_EQ(row->prev_hash, prev);
    EXPECT_EQ(row->hash, kAuditPinned[i].hash) << "row " << id;
    EXPECT_EQ(row->mac, kAuditPinned[i].mac) << "row " << id;
    EXPECT_EQ(auditRowHash(*row), kAuditPinned[i].hash);
    EXPECT_EQ(auditRowMac(kKey, *row), kAuditPinned[i].mac);
    prev = row->hash;
  }
}

TEST_F(ChainFormatTest, CustodyEventsHashAsPinned) {
  auto store = open("c.db", "");
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->addCapture({.capture_id = "cap-1", .host_id = "web-03"}).ok());
  auto added = store->addEvidence({.id = kEvidenceId, .capture_id = "cap-1", .host_id = "web-03"},
                                  custodyEvents());
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(added->size(), std::size(kCustodyPinned));
  std::string prev = kEvidenceId;
  for (size_t i = 0; i < added->size(); ++i) {
    const CustodyEntry& e = (*added)[i];
    EXPECT_EQ(e.prev_hash, prev);
    EXPECT_EQ(e.hash, kCustodyPinned[i]) << "event " << i;
    EXPECT_EQ(custodyEventHash(e), kCustodyPinned[i]);
    prev = e.hash;
  }
}

// A database holding the pinned rows as an earlier controller wrote them verifies, and new
// rows continue its chains.
TEST_F(ChainFormatTest, ADatabaseWithThePinnedRowsVerifiesAndGrows) {
  auto store = open("old.db", kKey);
  ASSERT_NE(store, nullptr);
  std::string prev = kAuditGenesisHash;
  for (size_t i = 0; i < std::size(kAuditPinned); ++i) {
    const AuditEntry e = auditRows()[i];
    ASSERT_TRUE(
        store
            ->execForTest(fmt::format(
                "INSERT INTO audit(id, at_unix_ms, operator, action, target, reason, "
                "outcome, detail, prev_hash, hash, mac) VALUES({}, {}, '{}', '{}', "
                "'{}', X'{}', '{}', X'{}', '{}', '{}', '{}')",
                i + 1, e.at_unix_ms, e.operator_name, e.action, e.target, hexOf(e.reason),
                e.outcome, hexOf(e.detail), prev, kAuditPinned[i].hash, kAuditPinned[i].mac))
            .ok());
    prev = kAuditPinned[i].hash;
  }
  ASSERT_TRUE(
      store
          ->execForTest("INSERT INTO evidence VALUES('" + kEvidenceId +
                        "', 'cap-1', 'web-03', '', '', 0, 0, 0, 0, '', 0, 0, '[]', '', 0, '')")
          .ok());
  prev = kEvidenceId;
  for (size_t i = 0; i < std::size(kCustodyPinned); ++i) {
    const CustodyEntry e = custodyEvents()[i];
    ASSERT_TRUE(store
                    ->execForTest(fmt::format(
                        "INSERT INTO custody(evidence_id, at, actor, action, detail, prev_hash, "
                        "hash) VALUES('{}', {}, '{}', '{}', X'{}', '{}', '{}')",
                        kEvidenceId, e.at_unix_ms, e.actor, e.action, hexOf(e.detail), prev,
                        kCustodyPinned[i]))
                    .ok());
    prev = kCustodyPinned[i];
  }

  auto audit = store->verifyAudit(AuditCheckpoint{3, kAuditPinned[2].hash});
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_TRUE(audit->ok) << audit->problem;
  EXPECT_EQ(audit->rows, 3);
  EXPECT_EQ(audit->unkeyed_rows, 0);
  auto custody = store->verifyCustody(kEvidenceId);
  ASSERT_TRUE(custody.ok()) << custody.status();
  EXPECT_TRUE(custody->ok) << custody->problem;
  EXPECT_EQ(custody->events, 3);

  auto row = store->appendAudit(auditRows()[0]);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->id, 4);
  EXPECT_EQ(row->prev_hash, kAuditPinned[2].hash);
  auto event = store->appendCustody({.evidence_id = kEvidenceId, .actor = "bob", .action = "get"});
  ASSERT_TRUE(event.ok());
  EXPECT_EQ(event->prev_hash, kCustodyPinned[2]);
  EXPECT_TRUE(store->verifyAudit()->ok);
  EXPECT_TRUE(store->verifyCustody(kEvidenceId)->ok);
}

}  // namespace
}  // namespace bulkhead::controller
