#include "controller/store/sqlite_migrations.h"

#include <iterator>
#include <vector>

#include "common/format.h"

namespace bulkhead::controller::sqlite {
namespace {

// Schema migrations: step N (1-based) moves user_version N-1 to N. Append only; never edit a
// step that has shipped.
constexpr const char* kMigrations[] = {
    // 1: registry, audit chain, desired state.
    R"sql(
      CREATE TABLE hosts(
        host_id TEXT PRIMARY KEY NOT NULL,
        hostname TEXT NOT NULL DEFAULT '',
        addresses TEXT NOT NULL DEFAULT '[]',
        labels TEXT NOT NULL DEFAULT '{}',
        os TEXT NOT NULL DEFAULT '',
        agent_version TEXT NOT NULL DEFAULT '',
        first_seen_unix_ms INTEGER NOT NULL DEFAULT 0,
        last_seen_unix_ms INTEGER NOT NULL DEFAULT 0,
        enforced_generation INTEGER NOT NULL DEFAULT 0,
        ruleset_hash TEXT NOT NULL DEFAULT '');
      CREATE TABLE audit(
        id INTEGER PRIMARY KEY,
        at_unix_ms INTEGER NOT NULL,
        operator TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL);
      CREATE TABLE desired_state(
        host_id TEXT PRIMARY KEY NOT NULL,
        generation INTEGER NOT NULL,
        state BLOB NOT NULL);
    )sql",
    // 2: last state report per host, tamper events.
    R"sql(
      ALTER TABLE hosts ADD COLUMN last_report BLOB;
      CREATE TABLE tamper_events(
        id INTEGER PRIMARY KEY,
        host_id TEXT NOT NULL,
        at_unix_ms INTEGER NOT NULL,
        event BLOB NOT NULL);
      CREATE INDEX tamper_events_by_host ON tamper_events(host_id, id);
    )sql",
    // 3: evidence: captures, stored bundles, custody chains (one per bundle).
    R"sql(
      CREATE TABLE captures(
        capture_id TEXT PRIMARY KEY NOT NULL,
        host_id TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        command_id TEXT NOT NULL,
        state TEXT NOT NULL);
      CREATE TABLE evidence(
        id TEXT PRIMARY KEY NOT NULL,
        capture_id TEXT NOT NULL,
        host_id TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        collected_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        size INTEGER NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        files INTEGER NOT NULL,
        signature_ok INTEGER NOT NULL,
        collector_errors TEXT NOT NULL,
        file_name TEXT NOT NULL,
        clock_offset_ms INTEGER NOT NULL,
        path TEXT NOT NULL);
      CREATE INDEX evidence_by_capture ON evidence(capture_id);
      CREATE TABLE custody(
        rowid INTEGER PRIMARY KEY,
        evidence_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL);
      CREATE INDEX custody_by_evidence ON custody(evidence_id, rowid);
    )sql",
    // 4: keyed audit chain: HMAC-SHA256 of each row's hash ('' on rows written before).
    R"sql(
      ALTER TABLE audit ADD COLUMN mac TEXT NOT NULL DEFAULT '';
    )sql",
    // 5: signals (detections) and what each caused.
    R"sql(
      CREATE TABLE signals(
        id TEXT PRIMARY KEY NOT NULL,
        received_at INTEGER NOT NULL,
        idempotency_key TEXT NOT NULL,
        record BLOB NOT NULL);
      CREATE INDEX signals_by_key ON signals(idempotency_key, received_at);
      CREATE INDEX signals_by_time ON signals(received_at);
    )sql",
    // 6: approvals (automatic actions waiting for a responder) and webhook integrations
    // (per-integration bearer tokens, stored as SHA-256 only).
    R"sql(
      CREATE TABLE approvals(
        id TEXT PRIMARY KEY NOT NULL,
        signal_id TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        record BLOB NOT NULL);
      CREATE INDEX approvals_by_state ON approvals(state, expires_at);
      CREATE INDEX approvals_by_time ON approvals(requested_at);
      CREATE TABLE integrations(
        name TEXT PRIMARY KEY NOT NULL,
        format TEXT NOT NULL,
        token_sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER NOT NULL DEFAULT 0,
        record BLOB NOT NULL);
      CREATE UNIQUE INDEX integrations_by_token ON integrations(token_sha256);
    )sql",
    // 7: join tokens (their secrets stored as SHA-256 only) and the hosts enrolled with them.
    R"sql(
      CREATE TABLE join_tokens(
        id TEXT PRIMARY KEY NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        record BLOB NOT NULL);
      CREATE INDEX join_tokens_by_time ON join_tokens(created_at);
      CREATE TABLE enrollments(
        host_id TEXT PRIMARY KEY NOT NULL,
        token_id TEXT NOT NULL,
        serial TEXT NOT NULL,
        labels TEXT NOT NULL,
        enrolled_at INTEGER NOT NULL);
    )sql",
    // 8: tenants (a fresh install and every older one has "default"), operators' role bindings,
    // the tenant an enrolled host joined, and the labels admins set (`bulkhead label`).
    R"sql(
      CREATE TABLE tenants(
        name TEXT PRIMARY KEY NOT NULL,
        created_at INTEGER NOT NULL,
        record BLOB NOT NULL);
      INSERT INTO tenants(name, created_at, record) VALUES('default', 0, X'0A0764656661756C74');
      CREATE TABLE role_bindings(
        id TEXT PRIMARY KEY NOT NULL,
        operator TEXT NOT NULL,
        tenant TEXT NOT NULL,
        hosts TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        record BLOB NOT NULL);
      CREATE UNIQUE INDEX role_bindings_by_scope ON role_bindings(operator, tenant, hosts);
      ALTER TABLE enrollments ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
      CREATE TABLE host_labels(
        host_id TEXT PRIMARY KEY NOT NULL,
        labels TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at INTEGER NOT NULL);
    )sql",
    // 9: operators enrolled with operator tokens (`bulkhead enroll`).
    R"sql(
      CREATE TABLE operator_enrollments(
        name TEXT PRIMARY KEY NOT NULL,
        token_id TEXT NOT NULL,
        serial TEXT NOT NULL,
        tenant TEXT NOT NULL,
        enrolled_at INTEGER NOT NULL);
    )sql",
    // 10: the tenant of each audit row (rows before it belong to "default").
    R"sql(
      ALTER TABLE audit ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
      CREATE INDEX audit_by_tenant ON audit(tenant, id);
    )sql",
    // 11: the tenant of each signal and approval (those before it belong to "default").
    R"sql(
      ALTER TABLE signals ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
      CREATE INDEX signals_by_tenant ON signals(tenant, received_at);
      ALTER TABLE approvals ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
      CREATE INDEX approvals_by_tenant ON approvals(tenant, state, expires_at);
    )sql",
    // 12: incidents; the incident of each audit row and capture ("" for none, as every row
    // before it).
    R"sql(
      CREATE TABLE incidents(
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        opened_at INTEGER NOT NULL,
        record BLOB NOT NULL,
        PRIMARY KEY(tenant, id));
      ALTER TABLE audit ADD COLUMN incident TEXT NOT NULL DEFAULT '';
      CREATE INDEX audit_by_incident ON audit(incident, id) WHERE incident != '';
      ALTER TABLE captures ADD COLUMN incident TEXT NOT NULL DEFAULT '';
      ALTER TABLE captures ADD COLUMN incident_tenant TEXT NOT NULL DEFAULT '';
      CREATE INDEX captures_by_incident ON captures(incident) WHERE incident != '';
    )sql",
    // 13: notifications: the deliveries queued for each channel, and how far the audit trail
    // has been routed to them.
    R"sql(
      CREATE TABLE notifications(
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        event_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        UNIQUE(channel, event_id));
      CREATE INDEX notifications_due ON notifications(next_attempt_at) WHERE state = 'pending';
      CREATE TABLE notify_cursor(
        only INTEGER PRIMARY KEY CHECK(only = 1),
        audit_id INTEGER NOT NULL);
    )sql",
};

}  // namespace

int latestSchemaVersion() { return static_cast<int>(std::size(kMigrations)); }

absl::StatusOr<int> schemaVersion(sql::Db* db) {
  sql::Stmt st(db, "PRAGMA user_version");
  if (auto s = st.prepared(); !s.ok()) return s;
  if (st.step() != sql::kRow) return sql::error(db, "PRAGMA user_version");
  return static_cast<int>(st.i64(0));
}

absl::Status migrate(sql::Db* db) {
  return sql::migrate(
      db, std::vector<const char*>(std::begin(kMigrations), std::end(kMigrations)),
      [db] { return schemaVersion(db); },
      [](int latest) { return fmt::format("PRAGMA user_version={}", latest); });
}

}  // namespace bulkhead::controller::sqlite
