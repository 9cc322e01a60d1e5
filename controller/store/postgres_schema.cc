#include "controller/store/postgres_schema.h"

#include <iterator>
#include <vector>

#include "common/format.h"

namespace bulkhead::controller::postgres {
namespace {

// Schema migrations: step N (1-based) moves schema_version N-1 to N. Append only; never edit a
// step that has shipped. Step 1 is the SQLite store's schema 13 (sqlite_migrations.cc): its
// INTEGER columns are BIGINT, BLOB is BYTEA, and the tables read in insertion order have a
// BIGSERIAL `rowid` (SQLite's is implicit).
constexpr const char* kMigrations[] = {
    R"sql(
      CREATE TABLE hosts(
        host_id TEXT PRIMARY KEY NOT NULL,
        hostname TEXT NOT NULL DEFAULT '',
        addresses TEXT NOT NULL DEFAULT '[]',
        labels TEXT NOT NULL DEFAULT '{}',
        os TEXT NOT NULL DEFAULT '',
        agent_version TEXT NOT NULL DEFAULT '',
        first_seen_unix_ms BIGINT NOT NULL DEFAULT 0,
        last_seen_unix_ms BIGINT NOT NULL DEFAULT 0,
        enforced_generation BIGINT NOT NULL DEFAULT 0,
        ruleset_hash TEXT NOT NULL DEFAULT '',
        last_report BYTEA);
      CREATE TABLE audit(
        id BIGINT PRIMARY KEY,
        at_unix_ms BIGINT NOT NULL,
        operator TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        mac TEXT NOT NULL DEFAULT '',
        tenant TEXT NOT NULL DEFAULT 'default',
        incident TEXT NOT NULL DEFAULT '');
      CREATE INDEX audit_by_tenant ON audit(tenant, id);
      CREATE INDEX audit_by_incident ON audit(incident, id) WHERE incident != '';
      CREATE TABLE desired_state(
        host_id TEXT PRIMARY KEY NOT NULL,
        generation BIGINT NOT NULL,
        state BYTEA NOT NULL);
      CREATE TABLE tamper_events(
        id BIGSERIAL PRIMARY KEY,
        host_id TEXT NOT NULL,
        at_unix_ms BIGINT NOT NULL,
        event BYTEA NOT NULL);
      CREATE INDEX tamper_events_by_host ON tamper_events(host_id, id);
      CREATE TABLE captures(
        capture_id TEXT PRIMARY KEY NOT NULL,
        host_id TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        requested_at BIGINT NOT NULL,
        command_id TEXT NOT NULL,
        state TEXT NOT NULL,
        incident TEXT NOT NULL DEFAULT '',
        incident_tenant TEXT NOT NULL DEFAULT '');
      CREATE INDEX captures_by_incident ON captures(incident) WHERE incident != '';
      CREATE TABLE evidence(
        id TEXT PRIMARY KEY NOT NULL,
        capture_id TEXT NOT NULL,
        host_id TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        requested_at BIGINT NOT NULL,
        collected_at BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        size BIGINT NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        files BIGINT NOT NULL,
        signature_ok BIGINT NOT NULL,
        collector_errors TEXT NOT NULL,
        file_name TEXT NOT NULL,
        clock_offset_ms BIGINT NOT NULL,
        path TEXT NOT NULL);
      CREATE INDEX evidence_by_capture ON evidence(capture_id);
      CREATE TABLE custody(
        rowid BIGSERIAL PRIMARY KEY,
        evidence_id TEXT NOT NULL,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL);
      CREATE INDEX custody_by_evidence ON custody(evidence_id, rowid);
      CREATE TABLE signals(
        rowid BIGSERIAL UNIQUE,
        id TEXT PRIMARY KEY NOT NULL,
        received_at BIGINT NOT NULL,
        idempotency_key TEXT NOT NULL,
        record BYTEA NOT NULL,
        tenant TEXT NOT NULL DEFAULT 'default');
      CREATE INDEX signals_by_key ON signals(idempotency_key, received_at);
      CREATE INDEX signals_by_time ON signals(received_at);
      CREATE INDEX signals_by_tenant ON signals(tenant, received_at);
      CREATE TABLE approvals(
        rowid BIGSERIAL UNIQUE,
        id TEXT PRIMARY KEY NOT NULL,
        signal_id TEXT NOT NULL,
        requested_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        state TEXT NOT NULL,
        record BYTEA NOT NULL,
        tenant TEXT NOT NULL DEFAULT 'default');
      CREATE INDEX approvals_by_state ON approvals(state, expires_at);
      CREATE INDEX approvals_by_time ON approvals(requested_at);
      CREATE INDEX approvals_by_tenant ON approvals(tenant, state, expires_at);
      CREATE TABLE integrations(
        name TEXT PRIMARY KEY NOT NULL,
        format TEXT NOT NULL,
        token_sha256 TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT NOT NULL DEFAULT 0,
        record BYTEA NOT NULL);
      CREATE UNIQUE INDEX integrations_by_token ON integrations(token_sha256);
      CREATE TABLE join_tokens(
        id TEXT PRIMARY KEY NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        record BYTEA NOT NULL);
      CREATE INDEX join_tokens_by_time ON join_tokens(created_at);
      CREATE TABLE enrollments(
        host_id TEXT PRIMARY KEY NOT NULL,
        token_id TEXT NOT NULL,
        serial TEXT NOT NULL,
        labels TEXT NOT NULL,
        enrolled_at BIGINT NOT NULL,
        tenant TEXT NOT NULL DEFAULT 'default');
      CREATE TABLE tenants(
        name TEXT PRIMARY KEY NOT NULL,
        created_at BIGINT NOT NULL,
        record BYTEA NOT NULL);
      INSERT INTO tenants(name, created_at, record) VALUES('default', 0, '\x0a0764656661756c74');
      CREATE TABLE role_bindings(
        id TEXT PRIMARY KEY NOT NULL,
        operator TEXT NOT NULL,
        tenant TEXT NOT NULL,
        hosts TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        record BYTEA NOT NULL);
      CREATE UNIQUE INDEX role_bindings_by_scope ON role_bindings(operator, tenant, hosts);
      CREATE TABLE host_labels(
        host_id TEXT PRIMARY KEY NOT NULL,
        labels TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at BIGINT NOT NULL);
      CREATE TABLE operator_enrollments(
        name TEXT PRIMARY KEY NOT NULL,
        token_id TEXT NOT NULL,
        serial TEXT NOT NULL,
        tenant TEXT NOT NULL,
        enrolled_at BIGINT NOT NULL);
      CREATE TABLE incidents(
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        opened_at BIGINT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY(tenant, id));
      CREATE TABLE notifications(
        id BIGSERIAL PRIMARY KEY,
        channel TEXT NOT NULL,
        event_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        last_error TEXT NOT NULL,
        UNIQUE(channel, event_id));
      CREATE INDEX notifications_due ON notifications(next_attempt_at) WHERE state = 'pending';
      CREATE TABLE notify_cursor(
        "only" INTEGER PRIMARY KEY CHECK("only" = 1),
        audit_id BIGINT NOT NULL);
    )sql",
};

}  // namespace

int latestSchemaVersion() { return static_cast<int>(std::size(kMigrations)); }

absl::StatusOr<int> schemaVersion(sql::Db* db) {
  sql::Stmt st(db, "SELECT version FROM schema_version");
  const int rc = st.step();
  if (rc == sql::kRow) return static_cast<int>(st.i64(0));
  if (rc == sql::kDone) return 0;
  return sql::error(db, "read the schema version");
}

absl::Status migrate(sql::Db* db) {
  // The version's table first, in the same transaction (DDL is transactional here).
  return sql::migrate(
      db, std::vector<const char*>(std::begin(kMigrations), std::end(kMigrations)),
      [db]() -> absl::StatusOr<int> {
        if (auto s = db->exec("CREATE TABLE IF NOT EXISTS schema_version("
                              "\"only\" INTEGER PRIMARY KEY CHECK(\"only\" = 1), "
                              "version INTEGER NOT NULL)");
            !s.ok()) {
          return s;
        }
        return schemaVersion(db);
      },
      [](int latest) {
        return fmt::format(
            "INSERT INTO schema_version(\"only\", version) VALUES(1, {}) "
            "ON CONFLICT(\"only\") DO UPDATE SET version = excluded.version",
            latest);
      });
}

}  // namespace bulkhead::controller::postgres
