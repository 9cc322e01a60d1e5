// The Store contract, run against every engine: SQLite (always) and PostgreSQL (when
// BULKHEAD_STORE_ENGINES names it: the CTest entry controller_store_contract_postgres starts a
// throw-away server, temp_postgres.h, in its own namespaces). One test, one fresh database: a
// file in a temporary directory, or a schema of its own on the shared PostgreSQL server.
// Engine-specific matters (SQLite's migrations and pragmas) are in sqlite_store_test.cc and the
// PostgreSQL ones at the end of this file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/strings/str_split.h"
#include "common/format.h"
#include "controller/store/audit_key.h"
#include "controller/store/evidence_files.h"
#include "controller/store/postgres_active_lock.h"
#include "controller/store/postgres_bus.h"
#include "controller/store/postgres_store.h"
#include "controller/store/sqlite_store.h"
#include "store_test_rows.h"
#include "temp_postgres.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;
namespace v1 = bulkhead::v1;

const std::string kKey(32, '\x11');
const std::string kOtherKey(32, '\x22');
const std::string kId1 = std::string(64, 'a');
const std::string kId2 = "aaaaaaaa" + std::string(56, 'b');  // shares 8 digits with kId1
const std::string kId3 = std::string(64, 'c');

// The engines to run: BULKHEAD_STORE_ENGINES ("sqlite,postgres"), else SQLite only.
std::vector<std::string> enginesUnderTest() {
  const char* env = std::getenv("BULKHEAD_STORE_ENGINES");
  if (env == nullptr || *env == '\0') return {"sqlite"};
  return absl::StrSplit(env, ',', absl::SkipEmpty());
}

// The one PostgreSQL server of this test process, started at first use (a failure to start
// fails every test that needs it, with the reason) and removed when the tests end.
absl::StatusOr<std::unique_ptr<testing::TempPostgres>>& postgresServer() {
  static auto* server = new absl::StatusOr<std::unique_ptr<testing::TempPostgres>>(
      absl::UnavailableError("not started"));
  return *server;
}
absl::StatusOr<testing::TempPostgres*> sharedPostgres() {
  static bool started = false;
  if (!started) {
    started = true;
    postgresServer() = testing::TempPostgres::start();
  }
  if (!postgresServer().ok()) return postgresServer().status();
  return postgresServer()->get();
}

class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { postgresServer() = absl::CancelledError("the tests ended"); }
};
[[maybe_unused]] const auto* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

// Polls `done` every 50 ms for up to `limit`; whether it came true.
bool waitFor(const std::function<bool()>& done,
             std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// A URL of `server` whose tables live in schema `schema` (made by the caller).
std::string schemaUrl(const testing::TempPostgres& server, const std::string& schema) {
  return server.url() + "&options=-csearch_path%3D" + schema;
}

class StoreContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fresh();
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  bool postgres() const { return GetParam() == "postgres"; }
  // From here on open() opens another, empty database.
  void fresh() {
    static std::atomic<int> databases{0};
    const int n = ++databases;
    if (!postgres()) {
      path_ = dir_ / fmt::format("controller-{}.db", n);
      return;
    }
    auto server = sharedPostgres();
    ASSERT_TRUE(server.ok()) << server.status();
    schema_ = fmt::format("t{}_{}", ::getpid(), n);
    auto admin = PostgresStore::create(schemaUrl(**server, "public"));
    ASSERT_TRUE(admin.ok()) << admin.status();
    ASSERT_TRUE((*admin)->execForTest(fmt::format("CREATE SCHEMA {}", schema_)).ok());
  }
  // The database of this test, opened (again).
  std::unique_ptr<SqlStore> open(const std::string& key = "") {
    absl::StatusOr<std::unique_ptr<SqlStore>> s = absl::InternalError("no engine");
    if (postgres()) {
      auto server = sharedPostgres();
      if (!server.ok()) {
        ADD_FAILURE() << server.status();
        return nullptr;
      }
      s = PostgresStore::create(schemaUrl(**server, schema_), {.audit_key = key});
    } else {
      s = SqliteStore::create(path_, {.audit_key = key});
    }
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  // SQL that makes inserting desired state for host h2 fail with "disk full".
  std::string refuseHostH2() const {
    if (postgres()) {
      return "CREATE FUNCTION refuse_h2() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "IF NEW.host_id = 'h2' THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; "
             "END $$; CREATE TRIGGER refuse_h2 BEFORE INSERT ON desired_state FOR EACH ROW "
             "EXECUTE FUNCTION refuse_h2()";
    }
    return "CREATE TRIGGER refuse_h2 BEFORE INSERT ON desired_state "
           "WHEN NEW.host_id = 'h2' BEGIN SELECT RAISE(ABORT, 'disk full'); END";
  }

  static AuditEntry entry(const std::string& action, const std::string& target) {
    AuditEntry e;
    e.at_unix_ms = 1700000000000;
    e.operator_name = "alice";
    e.action = action;
    e.target = target;
    e.reason = "INC-42";
    e.outcome = "ok";
    return e;
  }
  // Bundle `id` of capture `capture_id` in this test's store (store_test_rows.h).
  void addBundle(const std::string& id, const std::string& capture_id,
                 const std::string& host = "web-03") {
    testing::addBundle(*store_, id, capture_id, host, kId3);
  }

  fs::path dir_;
  fs::path path_;                    // SQLite: this test's database file
  std::string schema_;               // PostgreSQL: this test's schema
  std::unique_ptr<SqlStore> store_;  // the evidence tests' store
};

// A write that fails after part of its transaction ran leaves nothing of it, and no open
// transaction behind: the next write works.
TEST_P(StoreContract, AWriteFailingMidwayLeavesNothingAndTheNextWriteWorks) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->execForTest(refuseHostH2()).ok());
  v1::DesiredState d;
  d.set_generation(1);
  d.mutable_isolation()->set_enabled(true);
  auto row = store->commitChange({{"h1", d}, {"h2", d}}, entry("isolate", "h1,h2"));
  ASSERT_FALSE(row.ok());
  EXPECT_NE(std::string(row.status().message()).find("disk full"), std::string::npos);
  EXPECT_TRUE(store->loadDesiredStates()->empty());  // h1's row, written first, is gone
  EXPECT_TRUE(store->listAudit(0)->empty());
  auto next = store->appendAudit(entry("release", "h1"));
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_TRUE(store->commitChange({{"h1", d}}, entry("isolate", "h1")).ok());
  EXPECT_EQ(store->loadDesiredStates()->size(), 1u);
  EXPECT_TRUE(store->verifyAudit()->ok);
}

TEST_P(StoreContract, ReopenKeepsHostsAuditAndDesiredState) {
  {
    auto store = open();
    HostInfo h;
    h.host_id = "web-01";
    h.hostname = "web-01.lab";
    h.addresses = {"10.77.1.11/16", "fd77::11/64"};
    h.labels = {{"role", "web"}, {"env", "prod"}};
    h.os = "Debian 12";
    h.agent_version = "0.1.0";
    h.first_seen_unix_ms = 10;
    h.last_seen_unix_ms = 20;
    h.connected_since_unix_ms = 15;
    h.enforced_generation = 3;
    h.ruleset_hash = "abc";
    h.last_report.set_generation(3);
    h.last_report.set_flows_cut(4);
    bulkhead::v1::TamperEvent ev;
    ev.set_what("nft flush ruleset");
    ev.set_at_unix_ms(18);
    ASSERT_TRUE(store->saveHosts({h}, {{"web-01", ev}}, {}).ok());
    h.last_seen_unix_ms = 30;  // an update of the same row
    ASSERT_TRUE(store->saveHosts({h}, {}, {}).ok());
    ASSERT_TRUE(store->appendAudit(entry("isolate", "web-01")).ok());
    bulkhead::v1::DesiredState d;
    d.set_generation(3);
    d.mutable_isolation()->set_enabled(true);
    d.mutable_isolation()->set_reason("INC-42");
    ASSERT_TRUE(store->saveDesiredState("web-01", d).ok());
  }
  auto store = open();
  auto hosts = store->loadHosts();
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 1u);
  const HostInfo& h = (*hosts)[0];
  EXPECT_EQ(h.hostname, "web-01.lab");
  EXPECT_EQ(h.addresses, (std::vector<std::string>{"10.77.1.11/16", "fd77::11/64"}));
  EXPECT_EQ(h.labels.at("env"), "prod");
  EXPECT_EQ(h.last_seen_unix_ms, 30);
  EXPECT_EQ(h.connected_since_unix_ms, 0);  // not persisted: offline until it reconnects
  EXPECT_EQ(h.enforced_generation, 3u);
  EXPECT_EQ(h.last_report.flows_cut(), 4u);
  ASSERT_EQ(h.tamper_events.size(), 1u);
  EXPECT_EQ(h.tamper_events[0].what(), "nft flush ruleset");
  auto audit = store->listAudit(0);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].reason, "INC-42");
  auto desired = store->loadDesiredStates();
  ASSERT_TRUE(desired.ok());
  EXPECT_TRUE(desired->at("web-01").isolation().enabled());
  EXPECT_EQ(desired->at("web-01").generation(), 3u);
}

// Earlier versions wrote "any" as Protocol 0, which proto3 leaves out of the bytes: such a row
// is exactly a state saved with UNSPECIFIED, and it reads back as ANY.
TEST_P(StoreContract, ARowWrittenWithProtocolZeroReadsAsAny) {
  {
    auto store = open();
    bulkhead::v1::DesiredState d;
    d.set_generation(2);
    auto* b = d.add_blocks();
    b->set_remote_cidr("203.0.113.9/32");
    b->set_protocol(bulkhead::v1::PROTOCOL_UNSPECIFIED);
    auto* tcp = d.add_blocks();
    tcp->set_remote_cidr("203.0.113.10/32");
    tcp->set_protocol(bulkhead::v1::PROTOCOL_TCP);
    auto* r = d.mutable_isolation()->add_exemptions();
    r->set_remote_cidr("10.77.0.50/32");
    bulkhead::v1::Block only_cidr;
    only_cidr.set_remote_cidr("203.0.113.9/32");
    ASSERT_EQ(b->SerializeAsString(), only_cidr.SerializeAsString());
    ASSERT_TRUE(store->saveDesiredState("web-01", d).ok());
  }
  auto desired = open()->loadDesiredStates();
  ASSERT_TRUE(desired.ok()) << desired.status();
  const auto& d = desired->at("web-01");
  EXPECT_EQ(d.blocks(0).protocol(), bulkhead::v1::PROTOCOL_ANY);
  EXPECT_EQ(d.blocks(1).protocol(), bulkhead::v1::PROTOCOL_TCP);
  EXPECT_EQ(d.isolation().exemptions(0).protocol(), bulkhead::v1::PROTOCOL_ANY);
}

TEST_P(StoreContract, TamperEventsArePrunedPerHost) {
  auto store = open();
  HostInfo h;
  h.host_id = "web-01";
  std::vector<TamperRecord> events;
  for (int i = 0; i < 70; ++i) {
    bulkhead::v1::TamperEvent ev;
    ev.set_at_unix_ms(i);
    events.push_back({"web-01", ev});
  }
  ASSERT_TRUE(store->saveHosts({h}, events, {}).ok());
  auto hosts = store->loadHosts();
  ASSERT_TRUE(hosts.ok());
  const auto& evs = (*hosts)[0].tamper_events;
  ASSERT_EQ(evs.size(), kMaxTamperEvents);
  EXPECT_EQ(evs.front().at_unix_ms(), 20);
  EXPECT_EQ(evs.back().at_unix_ms(), 69);
}

TEST_P(StoreContract, AuditRowsChainAndListNewestLast) {
  auto store = open();
  for (int i = 1; i <= 5; ++i) {
    auto row = store->appendAudit(entry("status", "web-0" + std::to_string(i)));
    ASSERT_TRUE(row.ok());
    EXPECT_EQ(row->id, i);
    EXPECT_EQ(row->hash, auditRowHash(*row));
  }
  auto all = store->listAudit(0);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[0].prev_hash, kAuditGenesisHash);
  for (size_t i = 1; i < all->size(); ++i) EXPECT_EQ((*all)[i].prev_hash, (*all)[i - 1].hash);
  auto last2 = store->listAudit(2);
  ASSERT_TRUE(last2.ok());
  ASSERT_EQ(last2->size(), 2u);
  EXPECT_EQ((*last2)[0].id, 4);
  EXPECT_EQ((*last2)[1].id, 5);
  auto v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok);
  EXPECT_EQ(v->rows, 5);
}

TEST_P(StoreContract, VerifyDetectsAModifiedRow) {
  auto store = open();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(store->appendAudit(entry("isolate", "web-01")).ok());
  ASSERT_TRUE(store->execForTest("UPDATE audit SET reason = 'nothing to see' WHERE id = 3").ok());
  auto v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_id, 3);
  EXPECT_NE(v->problem.find("altered"), std::string::npos);
}

TEST_P(StoreContract, VerifyDetectsARecomputedHashAndADeletedRow) {
  auto store = open();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(store->appendAudit(entry("isolate", "web-01")).ok());
  {
    // An attacker who rewrites a row and its own hash still breaks the next row's link.
    auto rows = store->listAudit(0);
    AuditEntry forged = (*rows)[1];
    forged.outcome = "denied";
    forged.hash = auditRowHash(forged);
    ASSERT_TRUE(store
                    ->execForTest("UPDATE audit SET outcome = 'denied', hash = '" + forged.hash +
                                  "' WHERE id = 2")
                    .ok());
    auto v = store->verifyAudit();
    ASSERT_TRUE(v.ok());
    EXPECT_FALSE(v->ok);
    EXPECT_EQ(v->first_bad_id, 3);
  }
  auto store2 = open();
  ASSERT_TRUE(store2->execForTest("DELETE FROM audit WHERE id IN (2, 3)").ok());
  ASSERT_TRUE(store2->execForTest("DELETE FROM audit WHERE id = 1").ok());
  auto v = store2->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);  // row 4 no longer links to the chain start
  EXPECT_EQ(v->first_bad_id, 4);
}

TEST_P(StoreContract, AppendsAfterReopenContinueTheChain) {
  {
    auto store = open();
    ASSERT_TRUE(store->appendAudit(entry("hosts", "*")).ok());
  }
  auto store = open();
  auto row = store->appendAudit(entry("hosts", "*"));
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->id, 2);
  auto v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok);
  EXPECT_EQ(v->rows, 2);
}

TEST_P(StoreContract, IntegrationsAreAddedOnceRevokedAndKeptWithTheirAuditRows) {
  auto store = open();
  IntegrationRow row;
  row.token_sha256 = std::string(64, 'a');
  row.record.set_name("am");
  row.record.set_format("alertmanager");
  row.record.set_created_unix_ms(1700000000000);
  ASSERT_TRUE(store->addIntegration(row, entry("integration-create", "am")).ok());
  // The same name, or the same token hash, is refused and writes nothing (no audit row).
  IntegrationRow same_name = row;
  same_name.token_sha256 = std::string(64, 'b');
  EXPECT_TRUE(
      absl::IsAlreadyExists(store->addIntegration(same_name, entry("integration-create", "am"))));
  IntegrationRow same_token = row;
  same_token.record.set_name("other");
  EXPECT_FALSE(store->addIntegration(same_token, entry("integration-create", "other")).ok());
  EXPECT_EQ(store->listAudit(0)->size(), 1U);
  row.record.set_revoked_unix_ms(1700000001000);
  ASSERT_TRUE(store->updateIntegration(row, entry("integration-revoke", "am")).ok());
  IntegrationRow missing = row;
  missing.record.set_name("nope");
  EXPECT_TRUE(absl::IsNotFound(store->updateIntegration(missing, entry("x", "nope"))));
  store.reset();
  store = open();
  auto found = store->findIntegration("am");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->token_sha256, std::string(64, 'a'));
  EXPECT_EQ((*found)->record.revoked_unix_ms(), 1700000001000);
  EXPECT_FALSE(store->findIntegration("nope")->has_value());
  EXPECT_EQ(store->listIntegrations()->size(), 1U);
  EXPECT_EQ(store->listAudit(0)->size(), 2U);
}

TEST_P(StoreContract, CaptureThenEvidenceThenCustodyChainVerifies) {
  store_ = open();
  ASSERT_NE(store_, nullptr);
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

TEST_P(StoreContract, TamperedOrRemovedCustodyEventsAreDetected) {
  store_ = open();
  ASSERT_NE(store_, nullptr);
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

TEST_P(StoreContract, IdsResolveByUniquePrefix) {
  store_ = open();
  ASSERT_NE(store_, nullptr);
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

TEST_P(StoreContract, DuplicatesAreRefusedAndChangeNothing) {
  store_ = open();
  ASSERT_NE(store_, nullptr);
  addBundle(kId1, "cap-1");
  EXPECT_EQ(store_->addCapture(testing::captureRow("cap-1")).code(),
            absl::StatusCode::kAlreadyExists);
  EvidenceRow again{.id = kId1, .capture_id = "cap-1", .host_id = "web-03"};
  auto r = store_->addEvidence(again, {CustodyEntry{.action = "received"}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->listCustody(kId1)->size(), 3u);
  EXPECT_EQ(store_->getCapture("cap-x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->setCaptureState("cap-1", "timeout").ok());
  EXPECT_EQ(store_->setCaptureState("cap-x", "timeout").code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreContract, KeyedRowsCarryAMacOfTheirHashAndVerify) {
  auto store = open(kKey);
  testing::appendAuditRows(*store, 1, 3);
  auto rows = store->listAudit(0);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 3u);  // an empty table starts keyed: no marker row
  for (const auto& e : *rows) EXPECT_EQ(e.mac, auditRowMac(kKey, e));
  auto v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_TRUE(v->keyed);
  EXPECT_EQ(v->unkeyed_rows, 0);
  EXPECT_EQ(v->last_id, 3);
  EXPECT_EQ(v->last_hash, rows->back().hash);
}

TEST_P(StoreContract, AMiddleRowEditedWithEveryLaterHashRecomputedIsDetected) {
  {
    // Without a key (the chain before this change) the rewrite goes unnoticed...
    auto unkeyed = open("");
    testing::appendAuditRows(*unkeyed, 1, 6);
    testing::rewriteAuditFrom(*unkeyed, 3);
    auto v = unkeyed->verifyAudit();
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->ok);
  }
  fresh();
  // ...with one, the edited row's MAC no longer matches.
  auto store = open(kKey);
  testing::appendAuditRows(*store, 1, 6);
  testing::rewriteAuditFrom(*store, 3);
  auto v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_id, 3);
  EXPECT_NE(v->problem.find("MAC does not match"), std::string::npos) << v->problem;
}

TEST_P(StoreContract, StrippedMacsAreDetected) {
  auto store = open(kKey);
  testing::appendAuditRows(*store, 1, 6);
  testing::rewriteAuditFrom(*store, 4, /*strip_macs=*/true);
  auto v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_id, 4);
  EXPECT_NE(v->problem.find("no MAC"), std::string::npos) << v->problem;
  // Every MAC stripped: the table looks unkeyed, which a keyed controller refuses.
  testing::rewriteAuditFrom(*store, 1, /*strip_macs=*/true);
  v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_NE(v->problem.find("no row carries a MAC"), std::string::npos) << v->problem;
}

TEST_P(StoreContract, AWrongKeyIsDetectedAndNamed) {
  if (postgres()) {
    GTEST_SKIP() << "a PostgreSQL store refuses to open with another key: "
                    "PostgresStoreTest.AControllerWithAnotherAuditKeyIsRefused";
  }
  {
    auto store = open(kKey);
    testing::appendAuditRows(*store, 1, 3);
  }
  auto store = open(kOtherKey);
  auto v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_id, 1);
  EXPECT_NE(v->problem.find("audit key"), std::string::npos) << v->problem;
  EXPECT_NE(v->problem.find(auditKeyId(kOtherKey)), std::string::npos) << v->problem;
}

TEST_P(StoreContract, TailRowsDeletedAreDetectedAgainstACheckpoint) {
  auto store = open(kKey);
  testing::appendAuditRows(*store, 1, 6);
  auto head = store->verifyAudit();
  ASSERT_TRUE(head.ok() && head->ok);
  const AuditCheckpoint checkpoint{head->last_id, head->last_hash};
  auto v = store->verifyAudit(checkpoint);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;

  ASSERT_TRUE(store->execForTest("DELETE FROM audit WHERE id >= 5").ok());
  v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok);  // a shorter chain is still a valid chain...
  v = store->verifyAudit(checkpoint);
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);  // ...but not against the checkpoint
  EXPECT_EQ(v->first_bad_id, 6);
  EXPECT_NE(v->problem.find("rows missing at the tail"), std::string::npos) << v->problem;
  EXPECT_NE(v->problem.find("table ends at row 4"), std::string::npos) << v->problem;

  // Deleted, then new rows appended under the same ids: row 6 is there but not the same.
  testing::appendAuditRows(*store, 7, 8);
  v = store->verifyAudit(checkpoint);
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_id, 6);
  EXPECT_NE(v->problem.find("differs from the checkpoint"), std::string::npos) << v->problem;
}

TEST_P(StoreContract, SignalsAndApprovalsListPerTenantAndOlderOnesAreDefaults) {
  auto store = open();
  auto write = [](const std::string& id, const std::string& tenant) {
    SignalWrite w;
    SignalRow& row = w.row.emplace();
    row.idempotency_key = "k-" + id;
    row.record.set_signal_id(id);
    row.record.set_received_unix_ms(1700000000000);
    row.record.set_tenant(tenant);
    v1::Approval& a = w.approvals.emplace_back();
    a.set_approval_id("apr-" + id);
    a.set_signal_id(id);
    a.set_state(v1::APPROVAL_STATE_PENDING);
    a.set_expires_unix_ms(1700000600000);
    a.set_tenant(tenant);
    return w;
  };
  // One written before tenants (no tenant field), one of acme's.
  ASSERT_TRUE(store->addSignals({write("old", ""), write("acme-1", "acme")}, 0).ok());
  auto ids = [](const auto& rows) {
    std::vector<std::string> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(r.record.signal_id());
    return out;
  };
  EXPECT_EQ(ids(*store->listSignals(0, 10, {"default"})), std::vector<std::string>{"old"});
  EXPECT_EQ(ids(*store->listSignals(0, 10, {"acme"})), std::vector<std::string>{"acme-1"});
  EXPECT_TRUE(store->listSignals(0, 10, {"beta"})->empty());
  EXPECT_EQ(store->listSignals(0, 10, {"acme", "default"})->size(), 2U);
  EXPECT_EQ(store->listSignals(0, 10)->size(), 2U);  // no tenant named: every tenant's
  auto approvals = store->listApprovals(true, 10, {"acme"});
  ASSERT_EQ(approvals->size(), 1U);
  EXPECT_EQ(approvals->at(0).approval_id(), "apr-acme-1");
  EXPECT_EQ(store->listApprovals(false, 10, {"default"})->at(0).approval_id(), "apr-old");

  if (postgres()) return;  // its first schema has the tenant columns
  // A database of SQLite schema 10 (no tenant columns) migrates: its rows are tenant default's.
  ASSERT_TRUE(store
                  ->execForTest("DELETE FROM signals WHERE id = 'acme-1'; "
                                "DELETE FROM approvals WHERE id = 'apr-acme-1'; "
                                "DROP INDEX signals_by_tenant; DROP INDEX approvals_by_tenant; "
                                "ALTER TABLE signals DROP COLUMN tenant; "
                                "ALTER TABLE approvals DROP COLUMN tenant; "
                                "DROP TABLE notifications; DROP TABLE notify_cursor; "
                                "DROP TABLE incidents; DROP INDEX audit_by_incident; "
                                "ALTER TABLE audit DROP COLUMN incident; "
                                "DROP INDEX captures_by_incident; "
                                "ALTER TABLE captures DROP COLUMN incident; "
                                "ALTER TABLE captures DROP COLUMN incident_tenant; "
                                "PRAGMA user_version=10")
                  .ok());
  store.reset();
  store = open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*dynamic_cast<SqliteStore&>(*store).schemaVersion(),
            SqliteStore::latestSchemaVersion());
  EXPECT_EQ(ids(*store->listSignals(0, 10, {"default"})), std::vector<std::string>{"old"});
  EXPECT_EQ(store->listApprovals(true, 10, {"default"})->size(), 1U);
  EXPECT_TRUE(store->listApprovals(true, 10, {"acme"})->empty());
}

// Several controllers on one database (or two connections to one SQLite file): appends from
// both, at once, make one chain, numbered without gaps or repeats.
TEST_P(StoreContract, TwoStoresOnOneDatabaseAppendToOneChain) {
  auto a = open(kKey);
  auto b = open(kKey);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kEach = 40;
  std::atomic<int> failures{0};
  auto writer = [&failures](SqlStore* store, const std::string& name) {
    for (int i = 0; i < kEach; ++i) {
      AuditEntry e = testing::auditEntry(i);
      e.operator_name = name;
      if (!store->appendAudit(e).ok()) ++failures;
    }
  };
  std::thread ta(writer, a.get(), "replica-a");
  std::thread tb(writer, b.get(), "replica-b");
  ta.join();
  tb.join();
  EXPECT_EQ(failures, 0);
  auto rows = a->listAudit(0);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u * kEach);
  int from_b = 0;
  for (size_t i = 0; i < rows->size(); ++i) {
    EXPECT_EQ((*rows)[i].id, static_cast<int64_t>(i + 1));
    if ((*rows)[i].operator_name == "replica-b") ++from_b;
  }
  EXPECT_EQ(from_b, kEach);
  auto v = b->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->rows, 2 * kEach);
}

// An approval decided through two controllers at once is decided once: the other is told who
// decided first and writes nothing.
TEST_P(StoreContract, AnApprovalIsDecidedOnceAcrossStores) {
  auto a = open();
  auto b = open();
  SignalWrite w;
  SignalRow& row = w.row.emplace();
  row.idempotency_key = "k-1";
  row.record.set_signal_id("sig-1");
  v1::Approval& pending = w.approvals.emplace_back();
  pending.set_approval_id("apr-1");
  pending.set_signal_id("sig-1");
  pending.set_state(v1::APPROVAL_STATE_PENDING);
  pending.set_expires_unix_ms(1700000600000);
  ASSERT_TRUE(a->addSignals({w}, 0).ok());
  v1::Approval by_alice = pending;
  by_alice.set_state(v1::APPROVAL_STATE_APPROVED);
  by_alice.set_decided_by("alice");
  v1::Approval by_bob = pending;
  by_bob.set_state(v1::APPROVAL_STATE_REJECTED);
  by_bob.set_decided_by("bob");
  absl::Status first = a->decideApproval(by_alice, entry("approve", "apr-1"));
  absl::Status second = b->decideApproval(by_bob, entry("reject", "apr-1"));
  EXPECT_TRUE(first.ok()) << first;
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition) << second;
  EXPECT_NE(second.message().find("alice"), std::string::npos) << second;
  EXPECT_EQ(b->getApproval("apr-1")->state(), v1::APPROVAL_STATE_APPROVED);
  EXPECT_EQ(b->listAudit(0)->size(), 1u);
}

// A change of hundreds of hosts (written several hundred rows per statement) stores every
// state; one refused host in a later statement refuses the whole change, the rows of the
// statements before it included. Hundreds of host rows are saved, a host listed twice keeping
// its later row.
TEST_P(StoreContract, AChangeOfHundredsOfHostsIsWrittenWholeOrNotAtAll) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  constexpr int kHosts = 450;
  auto name = [](int i) { return fmt::format("web-{:03}", i); };
  std::map<std::string, v1::DesiredState> change;
  for (int i = 0; i < kHosts; ++i) {
    v1::DesiredState& d = change[name(i)];
    d.set_generation(1);
    d.mutable_isolation()->set_enabled(i % 2 == 0);
  }
  ASSERT_TRUE(store->commitChange(change, entry("isolate", "many")).ok());
  auto states = store->loadDesiredStates();
  ASSERT_TRUE(states.ok());
  ASSERT_EQ(states->size(), static_cast<size_t>(kHosts));
  EXPECT_TRUE(states->at(name(448)).isolation().enabled());
  EXPECT_FALSE(states->at(name(449)).isolation().enabled());
  // Generation 2 of every host, but web-300 (in the second statement) is at 3 already.
  v1::DesiredState newer;
  newer.set_generation(3);
  ASSERT_TRUE(store->commitChange({{name(300), newer}}, entry("isolate", name(300))).ok());
  for (auto& [host, d] : change) d.set_generation(2);
  auto refused = store->commitChange(change, entry("release", "many"));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kAborted) << refused.status();
  EXPECT_NE(refused.status().message().find("host " + name(300)), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("generation 3 is stored"), std::string::npos);
  states = store->loadDesiredStates();
  ASSERT_TRUE(states.ok());
  EXPECT_EQ(states->at(name(0)).generation(), 1u) << "a row of the first statement was kept";
  EXPECT_EQ(states->at(name(449)).generation(), 1u);
  EXPECT_EQ(store->listAudit(0)->size(), 2u);

  std::vector<HostInfo> hosts;
  for (int i = 0; i < kHosts; ++i) {
    HostInfo& h = hosts.emplace_back();
    h.host_id = name(i);
    h.hostname = name(i) + ".example";
    h.last_seen_unix_ms = 1000 + i;
  }
  hosts.push_back(hosts[5]);
  hosts.back().hostname = "renamed.example";
  ASSERT_TRUE(store->saveHosts(hosts, {}, {}).ok());
  auto saved = store->loadHosts();
  ASSERT_TRUE(saved.ok());
  ASSERT_EQ(saved->size(), static_cast<size_t>(kHosts));
  EXPECT_EQ((*saved)[5].hostname, "renamed.example");
  EXPECT_EQ((*saved)[449].last_seen_unix_ms, 1449);
}

// Two controllers change one host from the same generation: the first commit wins, the second
// is refused (Aborted, naming the host and the stored generation) and writes nothing, neither
// the state nor its audit row. Built on the stored generation, it goes through.
TEST_P(StoreContract, AChangeBuiltOnAnOlderGenerationIsRefusedAndWritesNothing) {
  auto a = open();
  auto b = open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  v1::DesiredState isolated;
  isolated.set_generation(1);
  isolated.mutable_isolation()->set_enabled(true);
  v1::DesiredState blocked;
  blocked.set_generation(1);
  blocked.add_blocks()->set_id("b-1");
  ASSERT_TRUE(a->commitChange({{"web-01", isolated}}, entry("isolate", "web-01")).ok());
  auto refused =
      b->commitChange({{"web-02", blocked}, {"web-01", blocked}}, entry("block", "web-01,web-02"));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kAborted) << refused.status();
  EXPECT_NE(refused.status().message().find("host web-01"), std::string::npos);
  EXPECT_NE(refused.status().message().find("generation 1 is stored"), std::string::npos);
  auto states = b->loadDesiredStates();
  ASSERT_TRUE(states.ok());
  ASSERT_EQ(states->size(), 1u);  // web-02's row, written first, is gone with the rest
  EXPECT_TRUE(states->at("web-01").isolation().enabled());
  EXPECT_EQ(b->listAudit(0)->size(), 1u);
  blocked.set_generation(2);
  ASSERT_TRUE(b->commitChange({{"web-01", blocked}}, entry("block", "web-01")).ok());
  auto mine = a->loadDesiredStatesOf({"web-01", "web-09"});
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_EQ(mine->size(), 1u);  // web-09 has none
  EXPECT_EQ(mine->at("web-01").generation(), 2u);
  EXPECT_EQ(mine->at("web-01").blocks_size(), 1);
  EXPECT_TRUE(a->verifyAudit()->ok);
}

// Every table a round trip: what the service layer's tests (on SQLite) rely on, on each engine.
TEST_P(StoreContract, TenantsBindingsLabelsIncidentsTokensAndNotificationsRoundTrip) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  v1::Tenant acme;
  acme.set_name("acme");
  acme.set_created_unix_ms(5);
  ASSERT_TRUE(store->addTenant(acme, entry("tenant-create", "acme")).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(store->addTenant(acme, entry("tenant-create", "acme"))));
  auto tenants = store->listTenants();
  ASSERT_TRUE(tenants.ok()) << tenants.status();
  ASSERT_EQ(tenants->size(), 2u);
  EXPECT_EQ((*tenants)[0].name(), "acme");
  EXPECT_EQ((*tenants)[1].name(), "default");

  v1::RoleBinding binding;
  binding.set_binding_id("rb-1");
  binding.set_operator_name("carol");
  binding.set_tenant("acme");
  ASSERT_TRUE(store->addRoleBinding(binding, entry("grant", "carol")).ok());
  binding.set_binding_id("rb-2");
  EXPECT_TRUE(absl::IsAlreadyExists(store->addRoleBinding(binding, entry("grant", "carol"))));
  EXPECT_EQ(store->listRoleBindings("carol")->size(), 1u);
  EXPECT_EQ(store->removeRoleBinding("rb-1", entry("revoke", "carol"))->operator_name(), "carol");
  EXPECT_TRUE(
      absl::IsNotFound(store->removeRoleBinding("rb-1", entry("revoke", "carol")).status()));

  ASSERT_TRUE(store
                  ->setHostLabels({.host_id = "web-01",
                                   .labels = {{"role", "web"}},
                                   .set_by = "alice",
                                   .set_unix_ms = 7},
                                  entry("label", "web-01"))
                  .ok());
  EXPECT_EQ((*store->findHostLabels("web-01"))->labels.at("role"), "web");
  EXPECT_FALSE(store->findHostLabels("web-02")->has_value());

  v1::Incident incident;
  incident.set_tenant("acme");
  incident.set_incident_id("INC-7");
  incident.set_title("beacon");
  ASSERT_TRUE(store->addIncident(incident, entry("incident-open", "INC-7")).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(store->addIncident(incident, entry("incident-open", "x"))));
  incident.set_title("beacon, contained");
  ASSERT_TRUE(store->updateIncident(incident, entry("incident-update", "INC-7")).ok());
  EXPECT_EQ(store->getIncident("acme", "INC-7")->title(), "beacon, contained");
  EXPECT_TRUE(absl::IsNotFound(store->getIncident("default", "INC-7").status()));
  EXPECT_EQ(store->listIncidents({"acme"})->size(), 1u);
  AuditEntry in_incident = entry("isolate", "web-01");
  in_incident.tenant = "acme";
  in_incident.incident = "INC-7";
  ASSERT_TRUE(store->appendAudit(in_incident).ok());
  auto incident_rows = store->listIncidentAudit("acme", "INC-7");
  ASSERT_TRUE(incident_rows.ok()) << incident_rows.status();
  ASSERT_EQ(incident_rows->size(), 1u);
  EXPECT_EQ((*incident_rows)[0].action, "isolate");

  JoinTokenRow token;
  token.secret_sha256 = std::string(64, 'e');
  token.record.set_token_id("jt-1");
  token.record.set_max_uses(1);
  ASSERT_TRUE(store->addJoinToken(token, entry("token-create", "jt-1")).ok());
  auto redeemed = store->redeemJoinToken(
      {.host_id = "web-09", .token_id = "jt-1", .labels = {{"site", "a"}}, .tenant = "acme"},
      [](const JoinTokenRow& t, bool known) -> absl::Status {
        if (known || t.record.uses() >= t.record.max_uses()) {
          return absl::FailedPreconditionError("used up");
        }
        return absl::OkStatus();
      },
      entry("enroll", "web-09"));
  ASSERT_TRUE(redeemed.ok()) << redeemed.status();
  EXPECT_EQ(redeemed->record.uses(), 1u);
  EXPECT_EQ((*store->findEnrollment("web-09"))->labels.at("site"), "a");
  EXPECT_EQ((*store->findJoinToken("jt-1"))->record.enrolled_hosts(0), "web-09");
  EXPECT_EQ(store->listJoinTokens()->size(), 1u);

  EXPECT_FALSE(store->notifyCursor()->has_value());
  NotificationRow note{.channel = "pager",
                       .event_id = "audit-1",
                       .tenant = "acme",
                       .kind = "isolate",
                       .severity = "info",
                       .event = "{}",
                       .created_unix_ms = 10,
                       .next_attempt_unix_ms = 10};
  ASSERT_TRUE(store->queueNotifications({note, note}, 12).ok());  // the second: the same event
  EXPECT_EQ(**store->notifyCursor(), 12);
  auto due = store->dueNotifications(10, 10);
  ASSERT_TRUE(due.ok()) << due.status();
  ASSERT_EQ(due->size(), 1u);
  NotificationRow delivered = (*due)[0];
  delivered.state = "delivered";
  delivered.attempts = 1;
  ASSERT_TRUE(store->updateNotification(delivered, entry("notify", "pager")).ok());
  EXPECT_TRUE(store->dueNotifications(100, 10)->empty());
  auto counts = store->countNotifications();
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].state, "delivered");
  EXPECT_EQ(store->listAuditAfter(8, 100)->size(), 2u);  // 10 rows: one per change above

  auto figures = store->figures(0);
  ASSERT_TRUE(figures.ok()) << figures.status();
  EXPECT_EQ(figures->newest_audit_id, 10);
  EXPECT_TRUE(store->probeWrite().ok());
  EXPECT_TRUE(store->verifyAudit()->ok);
}

INSTANTIATE_TEST_SUITE_P(Engines, StoreContract, ::testing::ValuesIn(enginesUnderTest()),
                         [](const auto& engine) { return engine.param; });

// --- PostgreSQL only ---

class PostgresStoreTest : public StoreContract {};
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PostgresStoreTest);

std::vector<std::string> postgresIfUnderTest() {
  std::vector<std::string> out;
  for (const std::string& e : enginesUnderTest()) {
    if (e == "postgres") out.push_back(e);
  }
  return out;
}

// The server restarts under a running store: a write transaction or a read finds the
// connection gone before doing anything and runs on a new one, and every row acknowledged
// before is there. A write cut off midway would answer Unavailable: never an unknown success.
TEST_P(PostgresStoreTest, AStoreReconnectsAfterTheServerRestartsAndLosesNothingAcknowledged) {
  auto store = open(kKey);
  ASSERT_NE(store, nullptr);
  testing::appendAuditRows(*store, 1, 5);
  auto server = sharedPostgres();
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE((*server)->restart().ok());
  int failed = 0;
  int64_t appended = 5;
  for (int i = 6; i <= 8; ++i) {
    auto row = store->appendAudit(testing::auditEntry(i));
    if (!row.ok()) {
      ++failed;
      EXPECT_EQ(row.status().code(), absl::StatusCode::kUnavailable) << row.status();
      EXPECT_NE(row.status().message().find("connection"), std::string::npos) << row.status();
      continue;
    }
    EXPECT_EQ(row->id, ++appended);
  }
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(store->listAudit(0)->size(), 8u);
  ASSERT_TRUE((*server)->restart().ok());
  EXPECT_EQ(store->listAudit(0)->size(), 8u);  // a read, on a new connection
  auto v = store->verifyAudit();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->rows, appended);
}

TEST_P(PostgresStoreTest, ADatabaseOfANewerSchemaIsRefused) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->execForTest("UPDATE schema_version SET version = 99").ok());
  store.reset();
  auto server = sharedPostgres();
  auto again = PostgresStore::create(schemaUrl(**server, schema_));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
  EXPECT_NE(again.status().message().find("schema version 99 is newer"), std::string::npos)
      << again.status();
}

// Two controllers with different audit keys would write rows the other's verification refuses.
TEST_P(PostgresStoreTest, AControllerWithAnotherAuditKeyIsRefused) {
  {
    auto store = open(kKey);
    ASSERT_NE(store, nullptr);
    testing::appendAuditRows(*store, 1, 2);
  }
  auto server = sharedPostgres();
  auto other = PostgresStore::create(schemaUrl(**server, schema_), {.audit_key = kOtherKey});
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition) << other.status();
  EXPECT_NE(other.status().message().find(auditKeyId(kOtherKey)), std::string::npos)
      << other.status();
  EXPECT_NE(open(kKey), nullptr);
}

// One controller active per database: a second one waits until the first one's session ends.
TEST_P(PostgresStoreTest, TheActiveLockIsHeldByOneControllerAndFreedWhenItStops) {
  auto server = sharedPostgres();
  ASSERT_TRUE(server.ok());
  const std::string url = schemaUrl(**server, schema_);
  auto a = std::make_unique<PostgresActiveLock>(url);
  PostgresActiveLock b(url);
  ASSERT_TRUE(*a->tryAcquire());
  EXPECT_TRUE(*a->tryAcquire());  // held already
  EXPECT_TRUE(*a->confirm());
  EXPECT_FALSE(*b.tryAcquire());
  a.reset();  // the active controller dies: its session ends
  EXPECT_TRUE(waitFor([&b] { return *b.tryAcquire(); }));
  EXPECT_TRUE(*b.confirm());
}

// Controllers serving at once: a committed change is announced to every listener at its
// commit, with its sender and hosts; a refused one announces nothing. What a controller sends
// on the link reaches the others (NOTIFY channels span the database: the payloads here are
// this test's own).
TEST_P(PostgresStoreTest, ACommittedChangeIsAnnouncedAndARefusedOneIsNot) {
  auto server = sharedPostgres();
  ASSERT_TRUE(server.ok());
  const std::string url = schemaUrl(**server, schema_);
  std::mutex mu;
  std::vector<std::string> heard;
  std::atomic<int> connected{0};
  PostgresBus bus(
      url, {SqlStore::kDesiredChannel, "bulkhead_test"}, "bulkhead_test",
      PostgresBus::Handlers{.notice =
                                [&](const std::string& channel, const std::string& payload) {
                                  std::lock_guard lock(mu);
                                  heard.push_back(channel + ": " + payload);
                                },
                            .connected = [&connected] { ++connected; }});
  bus.start();
  ASSERT_TRUE(waitFor([&connected] { return connected > 0; }));
  auto store = open();
  ASSERT_NE(store, nullptr);
  const std::string me = "replica-" + schema_;
  store->announceChangesAs(me);
  v1::DesiredState d;
  d.set_generation(1);
  ASSERT_TRUE(store->commitChange({{"h-a", d}, {"h-b", d}}, entry("isolate", "h-a,h-b")).ok());
  ASSERT_FALSE(store->commitChange({{"h-c", d}, {"h-a", d}}, entry("isolate", "h-a,h-c")).ok());
  bus.send(me + " says hello");
  const std::string change = fmt::format("{}: {} h-a h-b", SqlStore::kDesiredChannel, me);
  const std::string hello = "bulkhead_test: " + me + " says hello";
  auto has = [&](const std::string& what) {
    std::lock_guard lock(mu);
    return std::find(heard.begin(), heard.end(), what) != heard.end();
  };
  EXPECT_TRUE(waitFor([&] { return has(change) && has(hello); }));
  std::lock_guard lock(mu);
  for (const auto& h : heard) {
    EXPECT_EQ(h.find("h-c"), std::string::npos) << "a refused change was announced: " << h;
  }
}

// Events sent faster than one round trip each (the acknowledgements of a fleet-wide isolate)
// go in batches: every one arrives, once, in the order sent, quotes and backslashes intact.
// The channel is this test's own (NOTIFY channels span the database).
TEST_P(PostgresStoreTest, ThousandsOfEventsSentAtOnceArriveEachOnceInOrder) {
  auto server = sharedPostgres();
  ASSERT_TRUE(server.ok());
  const std::string url = schemaUrl(**server, schema_);
  const std::string channel = "bulkhead_test_" + schema_;
  std::mutex mu;
  std::vector<std::string> heard;
  std::atomic<int> connected{0};
  PostgresBus listener(url, {channel}, channel,
                       PostgresBus::Handlers{.notice =
                                                 [&](const std::string&, const std::string& p) {
                                                   std::lock_guard lock(mu);
                                                   heard.push_back(p);
                                                 },
                                             .connected = [&connected] { ++connected; }});
  PostgresBus sender(
      url, {}, channel,
      PostgresBus::Handlers{.notice = {}, .connected = [&connected] { ++connected; }});
  listener.start();
  sender.start();
  ASSERT_TRUE(waitFor([&connected] { return connected == 2; }));
  constexpr int kEvents = 3000;
  std::vector<std::string> sent;
  for (int i = 0; i < kEvents; ++i) {
    sent.push_back(i % 500 == 7 ? fmt::format("it's {} \\ \"quoted\"", i)
                                : fmt::format("event {} {}", i, std::string(i % 64, 'x')));
    sender.send(sent.back());
  }
  EXPECT_TRUE(waitFor([&] {
    std::lock_guard lock(mu);
    return heard.size() >= sent.size();
  }));
  std::lock_guard lock(mu);
  EXPECT_EQ(heard, sent);
}

// Of two controllers' singleton leases, one leads (after the takeover delay); when its
// controller stops, the other leads.
TEST_P(PostgresStoreTest, OneSingletonLeaseLeadsAndTheOtherTakesOverWhenItStops) {
  auto server = sharedPostgres();
  ASSERT_TRUE(server.ok());
  const std::string url = schemaUrl(**server, schema_);
  auto lock_a = std::make_unique<PostgresActiveLock>(url);
  PostgresActiveLock lock_b(url);
  auto a = std::make_unique<SingletonLease>(lock_a.get(), [](bool) {});
  ASSERT_TRUE(waitFor([&a] { return a->leading(); }));
  SingletonLease b(&lock_b, [](bool) {});
  std::this_thread::sleep_for(kTakeoverDelay + 2 * kCheckInterval);
  EXPECT_TRUE(a->leading());
  EXPECT_FALSE(b.leading());
  a.reset();
  lock_a.reset();  // its session ends: PostgreSQL frees the lock
  EXPECT_TRUE(waitFor([&b] { return b.leading(); }));
}

// The server restarts: every session (and lock) is gone. A standby that takes the lock first
// wins; the old active one's confirm() then says another holds it. Alone, it takes it again.
TEST_P(PostgresStoreTest, AfterARestartTheActiveLockGoesToWhoeverTakesItFirst) {
  auto server = sharedPostgres();
  ASSERT_TRUE(server.ok());
  const std::string url = schemaUrl(**server, schema_);
  PostgresActiveLock a(url);
  PostgresActiveLock b(url);
  ASSERT_TRUE(*a.tryAcquire());
  ASSERT_TRUE((*server)->restart().ok());
  auto b_took = b.tryAcquire();
  ASSERT_TRUE(b_took.ok()) << b_took.status();
  EXPECT_TRUE(*b_took);
  auto a_holds = a.confirm();
  ASSERT_TRUE(a_holds.ok()) << a_holds.status();
  EXPECT_FALSE(*a_holds);
  ASSERT_TRUE((*server)->restart().ok());
  a_holds = a.confirm();  // b's session is gone too: a takes it again
  ASSERT_TRUE(a_holds.ok()) << a_holds.status();
  EXPECT_TRUE(*a_holds);
  auto b_holds = b.confirm();
  ASSERT_TRUE(b_holds.ok()) << b_holds.status();
  EXPECT_FALSE(*b_holds);
}

// An active controller that cannot reach the database stops within kFenceAfter (then a
// standby may take over), not before.
TEST_P(PostgresStoreTest, AnActiveControllerCutOffFromTheDatabaseStopsItself) {
  auto server = sharedPostgres();
  ASSERT_TRUE(server.ok());
  PostgresActiveLock lock(schemaUrl(**server, schema_));
  ASSERT_TRUE(*lock.tryAcquire());
  std::mutex mu;
  std::string reason;
  std::chrono::steady_clock::time_point stopped_at;
  auto watch = watchActiveLock(&lock, [&](const std::string& why) {
    std::lock_guard l(mu);
    reason = why;
    stopped_at = std::chrono::steady_clock::now();
  });
  ASSERT_TRUE((*server)->stop().ok());
  const auto cut_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(waitFor(
      [&] {
        std::lock_guard l(mu);
        return !reason.empty();
      },
      kFenceAfter + std::chrono::seconds(5)));
  watch.reset();
  ASSERT_TRUE((*server)->restart().ok());
  std::lock_guard l(mu);
  EXPECT_NE(reason.find("could not be confirmed"), std::string::npos) << reason;
  EXPECT_GE(stopped_at - cut_at, kFenceAfter - kCheckInterval);
}

// libpq would cut a text at a NUL byte: the row would be stored other than it was hashed.
TEST_P(PostgresStoreTest, TextWithANulByteIsRefusedNotCut) {
  auto store = open(kKey);
  ASSERT_NE(store, nullptr);
  AuditEntry e = testing::auditEntry(1);
  e.detail = std::string("before\0after", 12);
  auto row = store->appendAudit(e);
  EXPECT_FALSE(row.ok());
  EXPECT_NE(row.status().message().find("NUL byte"), std::string::npos) << row.status();
  EXPECT_TRUE(store->listAudit(0)->empty());
  testing::appendAuditRows(*store, 2, 3);
  EXPECT_TRUE(store->verifyAudit()->ok);
}

TEST_P(PostgresStoreTest, AnUnreachableServerIsAClearError) {
  auto s = PostgresStore::create("postgresql://bulkhead:secret@/x?host=/nonexistent");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_NE(s.status().message().find("cannot connect to PostgreSQL"), std::string::npos);
  EXPECT_EQ(s.status().message().find("secret"), std::string::npos) << s.status();
}

INSTANTIATE_TEST_SUITE_P(Engines, PostgresStoreTest, ::testing::ValuesIn(postgresIfUnderTest()),
                         [](const auto& engine) { return engine.param; });

TEST(PostgresUrl, PasswordsAreRedacted) {
  EXPECT_EQ(redactedUrl("postgresql://bh:s3cret@db1:5432/bulkhead?sslmode=verify-full"),
            "postgresql://bh:***@db1:5432/bulkhead?sslmode=verify-full");
  EXPECT_EQ(redactedUrl("postgresql://db1/bulkhead?user=bh&password=s3cret&sslmode=require"),
            "postgresql://db1/bulkhead?user=bh&password=***&sslmode=require");
  EXPECT_EQ(redactedUrl("postgresql://bh@db1/bulkhead"), "postgresql://bh@db1/bulkhead");
}

}  // namespace
}  // namespace bulkhead::controller
