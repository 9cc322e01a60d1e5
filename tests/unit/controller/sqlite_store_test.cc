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

// A write that fails after part of its transaction ran leaves nothing of it, and no open
// transaction behind: the next write works.
TEST_F(SqliteStoreTest, AWriteFailingMidwayLeavesNothingAndTheNextWriteWorks) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(
      store
          ->execForTest("CREATE TRIGGER refuse_h2 BEFORE INSERT ON desired_state "
                        "WHEN NEW.host_id = 'h2' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
          .ok());
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

TEST_F(SqliteStoreTest, UnwritableLocationIsAClearError) {
  auto s = SqliteStore::create(dir_ / "missing-subdir" / "controller.db");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("missing-subdir"), std::string::npos);
}

TEST_F(SqliteStoreTest, ReopenKeepsHostsAuditAndDesiredState) {
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
TEST_F(SqliteStoreTest, ARowWrittenWithProtocolZeroReadsAsAny) {
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

TEST_F(SqliteStoreTest, TamperEventsArePrunedPerHost) {
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

TEST_F(SqliteStoreTest, AuditRowsChainAndListNewestLast) {
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

TEST_F(SqliteStoreTest, VerifyDetectsAModifiedRow) {
  auto store = open();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(store->appendAudit(entry("isolate", "web-01")).ok());
  ASSERT_TRUE(store->execForTest("UPDATE audit SET reason = 'nothing to see' WHERE id = 3").ok());
  auto v = store->verifyAudit();
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_bad_id, 3);
  EXPECT_NE(v->problem.find("altered"), std::string::npos);
}

TEST_F(SqliteStoreTest, VerifyDetectsARecomputedHashAndADeletedRow) {
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

TEST_F(SqliteStoreTest, AppendsAfterReopenContinueTheChain) {
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

TEST_F(SqliteStoreTest, IntegrationsAreAddedOnceRevokedAndKeptWithTheirAuditRows) {
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

TEST_F(SqliteStoreTest, SignalsAndApprovalsListPerTenantAndOlderOnesAreDefaults) {
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

  // A database of schema 10 (no tenant columns) migrates: its rows are tenant default's.
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
  EXPECT_EQ(*store->schemaVersion(), SqliteStore::latestSchemaVersion());
  EXPECT_EQ(ids(*store->listSignals(0, 10, {"default"})), std::vector<std::string>{"old"});
  EXPECT_EQ(store->listApprovals(true, 10, {"default"})->size(), 1U);
  EXPECT_TRUE(store->listApprovals(true, 10, {"acme"})->empty());
}

}  // namespace
}  // namespace bulkhead::controller
