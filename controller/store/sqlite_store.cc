#include "controller/store/sqlite_store.h"

#include <sqlite3.h>

#include <cctype>
#include <chrono>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "common/format.h"
#include "controller/store/audit_key.h"
#include "evidence/hash.h"

namespace bulkhead::controller {
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
};

// Runs `sql` (one or more statements, no results).
absl::Status execSql(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return absl::InternalError(fmt::format("sqlite: {}", msg));
  }
  return absl::OkStatus();
}

// One write transaction (BEGIN IMMEDIATE). Rolled back when it leaves scope uncommitted, so
// no return path leaves it open or half-applied. REQUIRES: the store's lock held for its life.
class Transaction {
 public:
  static absl::StatusOr<Transaction> begin(sqlite3* db) {
    if (auto s = execSql(db, "BEGIN IMMEDIATE"); !s.ok()) return s;
    return Transaction(db);
  }
  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (db_ != nullptr) execSql(db_, "ROLLBACK").IgnoreError();
  }
  // Commits; on failure the transaction is rolled back when it leaves scope.
  absl::Status commit() {
    if (auto s = execSql(db_, "COMMIT"); !s.ok()) return s;
    db_ = nullptr;
    return absl::OkStatus();
  }

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  absl::Status prepared() const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(fmt::format("sqlite prepare: {}", sqlite3_errmsg(db_)));
  }
  void bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  absl::Status run() {
    int rc = step();
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
      return absl::OkStatus();
    }
    std::string msg = sqlite3_errmsg(db_);
    sqlite3_reset(stmt_);
    return absl::InternalError(fmt::format("sqlite: {}", msg));
  }
  int64_t i64(int col) { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) {
    const auto* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

void appendField(std::string& out, const std::string& v) {
  out += fmt::format("{}:", v.size());
  out += v;
  out += ';';
}

absl::Status sqliteError(sqlite3* db, std::string_view what) {
  return absl::InternalError(fmt::format("{}: {}", what, sqlite3_errmsg(db)));
}

}  // namespace

std::string auditRowHash(const AuditEntry& e) {
  std::string buf;
  appendField(buf, e.prev_hash);
  appendField(buf, std::to_string(e.id));
  appendField(buf, std::to_string(e.at_unix_ms));
  appendField(buf, e.operator_name);
  appendField(buf, e.action);
  appendField(buf, e.target);
  appendField(buf, e.reason);
  appendField(buf, e.outcome);
  appendField(buf, e.detail);
  return evidence::sha256Hex(buf);
}

std::string auditRowMac(std::string_view key, const AuditEntry& e) {
  return evidence::hmacSha256Hex(key, e.hash);
}

std::string custodyEventHash(const CustodyEntry& e) {
  std::string buf;
  appendField(buf, e.prev_hash);
  appendField(buf, e.evidence_id);
  appendField(buf, std::to_string(e.at_unix_ms));
  appendField(buf, e.actor);
  appendField(buf, e.action);
  appendField(buf, e.detail);
  return evidence::sha256Hex(buf);
}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::create(const std::filesystem::path& path,
                                                                 SqliteStoreOptions options) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::PermissionDeniedError(
        fmt::format("cannot open database {}: {}", path.string(), msg));
  }
  std::unique_ptr<SqliteStore> store(
      new SqliteStore(db, path.string(), std::move(options.audit_key)));
  sqlite3_busy_timeout(db, 5000);
  {
    std::lock_guard lock(store->mu_);
    // journal_mode returns a row; exec() ignores it. A read-only file or directory fails here.
    for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                               "PRAGMA foreign_keys=ON"}) {
      if (auto s = store->exec(pragma); !s.ok()) {
        return absl::PermissionDeniedError(
            fmt::format("cannot use database {}: {}", path.string(), s.message()));
      }
    }
    {
      Stmt check(db, "PRAGMA journal_mode");
      if (check.prepared().ok() && check.step() == SQLITE_ROW && check.text(0) != "wal") {
        return absl::PermissionDeniedError(fmt::format(
            "cannot use database {}: WAL journal mode unavailable (journal_mode={})",
            path.string(), check.text(0)));
      }
    }
    if (auto s = store->migrate(); !s.ok()) {
      return absl::PermissionDeniedError(
          fmt::format("cannot use database {}: {}", path.string(), s.message()));
    }
    if (auto s = store->startKeyedChainLocked(); !s.ok()) {
      return absl::PermissionDeniedError(
          fmt::format("cannot use database {}: starting the keyed audit chain: {}",
                      path.string(), s.message()));
    }
  }
  return store;
}

SqliteStore::~SqliteStore() { sqlite3_close_v2(db_); }

int SqliteStore::latestSchemaVersion() { return static_cast<int>(std::size(kMigrations)); }

absl::Status SqliteStore::exec(const char* sql) { return execSql(db_, sql); }

absl::Status SqliteStore::execForTest(const std::string& sql) {
  std::lock_guard lock(mu_);
  return exec(sql.c_str());
}

absl::StatusOr<int64_t> SqliteStore::pragmaForTest(const std::string& name) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format("PRAGMA {}", name);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  if (st.step() != SQLITE_ROW) return sqliteError(db_, sql);
  return st.i64(0);
}

absl::StatusOr<int> SqliteStore::schemaVersion() {
  std::lock_guard lock(mu_);
  Stmt st(db_, "PRAGMA user_version");
  if (auto s = st.prepared(); !s.ok()) return s;
  if (st.step() != SQLITE_ROW) return sqliteError(db_, "PRAGMA user_version");
  return static_cast<int>(st.i64(0));
}

absl::Status SqliteStore::migrate() {
  auto tx = Transaction::begin(db_);
  if (!tx.ok()) return tx.status();
  int version = 0;
  {
    Stmt st(db_, "PRAGMA user_version");
    if (auto s = st.prepared(); !s.ok()) return s;
    if (st.step() == SQLITE_ROW) version = static_cast<int>(st.i64(0));
  }
  if (version > latestSchemaVersion()) {
    return absl::FailedPreconditionError(fmt::format(
        "schema version {} is newer than this controller knows ({})", version,
        latestSchemaVersion()));
  }
  for (int v = version; v < latestSchemaVersion(); ++v) {
    if (auto s = exec(kMigrations[v]); !s.ok()) {
      return absl::InternalError(fmt::format("migration to schema {}: {}", v + 1, s.message()));
    }
  }
  std::string set_version = fmt::format("PRAGMA user_version={}", latestSchemaVersion());
  if (auto s = exec(set_version.c_str()); !s.ok()) return s;
  return tx->commit();
}

absl::Status SqliteStore::saveHosts(const std::vector<HostInfo>& hosts,
                                    const std::vector<TamperRecord>& tamper) {
  if (hosts.empty() && tamper.empty()) return absl::OkStatus();
  std::lock_guard lock(mu_);
  auto tx = Transaction::begin(db_);
  if (!tx.ok()) return tx.status();
  Stmt up(db_, R"sql(
      INSERT INTO hosts(host_id, hostname, addresses, labels, os, agent_version,
                        first_seen_unix_ms, last_seen_unix_ms, enforced_generation,
                        ruleset_hash, last_report)
      VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
      ON CONFLICT(host_id) DO UPDATE SET
        hostname=excluded.hostname, addresses=excluded.addresses, labels=excluded.labels,
        os=excluded.os, agent_version=excluded.agent_version,
        first_seen_unix_ms=excluded.first_seen_unix_ms,
        last_seen_unix_ms=excluded.last_seen_unix_ms,
        enforced_generation=excluded.enforced_generation,
        ruleset_hash=excluded.ruleset_hash, last_report=excluded.last_report)sql");
  if (auto s = up.prepared(); !s.ok()) return s;
  for (const auto& h : hosts) {
    up.bind(1, h.host_id);
    up.bind(2, h.hostname);
    up.bind(3, nlohmann::json(h.addresses).dump());
    up.bind(4, nlohmann::json(h.labels).dump());
    up.bind(5, h.os);
    up.bind(6, h.agent_version);
    up.bind(7, h.first_seen_unix_ms);
    up.bind(8, h.last_seen_unix_ms);
    up.bind(9, static_cast<int64_t>(h.enforced_generation));
    up.bind(10, h.ruleset_hash);
    up.bindBlob(11, h.last_report.SerializeAsString());
    if (auto s = up.run(); !s.ok()) return s;
  }
  if (!tamper.empty()) {
    Stmt ins(db_, "INSERT INTO tamper_events(host_id, at_unix_ms, event) VALUES(?1, ?2, ?3)");
    if (auto s = ins.prepared(); !s.ok()) return s;
    for (const auto& t : tamper) {
      ins.bind(1, t.host_id);
      ins.bind(2, t.event.at_unix_ms());
      ins.bindBlob(3, t.event.SerializeAsString());
      if (auto s = ins.run(); !s.ok()) return s;
    }
    Stmt prune(db_, R"sql(
        DELETE FROM tamper_events WHERE host_id = ?1 AND id NOT IN (
          SELECT id FROM tamper_events WHERE host_id = ?1 ORDER BY id DESC LIMIT ?2))sql");
    if (auto s = prune.prepared(); !s.ok()) return s;
    std::string last;
    for (const auto& t : tamper) {
      if (t.host_id == last) continue;
      last = t.host_id;
      prune.bind(1, t.host_id);
      prune.bind(2, static_cast<int64_t>(kMaxTamperEvents));
      if (auto s = prune.run(); !s.ok()) return s;
    }
  }
  return tx->commit();
}

absl::StatusOr<std::vector<HostInfo>> SqliteStore::loadHosts() {
  std::lock_guard lock(mu_);
  std::vector<HostInfo> out;
  std::map<std::string, size_t> index;
  {
    Stmt st(db_, R"sql(
        SELECT host_id, hostname, addresses, labels, os, agent_version, first_seen_unix_ms,
               last_seen_unix_ms, enforced_generation, ruleset_hash, last_report
        FROM hosts ORDER BY host_id)sql");
    if (auto s = st.prepared(); !s.ok()) return s;
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) {
      HostInfo h;
      h.host_id = st.text(0);
      h.hostname = st.text(1);
      auto addresses = nlohmann::json::parse(st.text(2), nullptr, false);
      if (addresses.is_array()) {
        for (const auto& a : addresses) {
          if (a.is_string()) h.addresses.push_back(a.get<std::string>());
        }
      }
      auto labels = nlohmann::json::parse(st.text(3), nullptr, false);
      if (labels.is_object()) {
        for (const auto& [k, v] : labels.items()) {
          if (v.is_string()) h.labels[k] = v.get<std::string>();
        }
      }
      h.os = st.text(4);
      h.agent_version = st.text(5);
      h.first_seen_unix_ms = st.i64(6);
      h.last_seen_unix_ms = st.i64(7);
      h.enforced_generation = static_cast<uint64_t>(st.i64(8));
      h.ruleset_hash = st.text(9);
      h.last_report.ParseFromString(st.text(10));
      index[h.host_id] = out.size();
      out.push_back(std::move(h));
    }
    if (rc != SQLITE_DONE) return sqliteError(db_, "load hosts");
  }
  Stmt ev(db_, "SELECT host_id, event FROM tamper_events ORDER BY id");
  if (auto s = ev.prepared(); !s.ok()) return s;
  int rc;
  while ((rc = ev.step()) == SQLITE_ROW) {
    auto it = index.find(ev.text(0));
    if (it == index.end()) continue;
    bulkhead::v1::TamperEvent e;
    if (!e.ParseFromString(ev.text(1))) continue;
    auto& list = out[it->second].tamper_events;
    list.push_back(std::move(e));
    while (list.size() > kMaxTamperEvents) list.pop_front();
  }
  if (rc != SQLITE_DONE) return sqliteError(db_, "load tamper events");
  return out;
}

absl::StatusOr<AuditEntry> SqliteStore::insertAuditLocked(const AuditEntry& entry) {
  AuditEntry row = entry;
  row.prev_hash = kAuditGenesisHash;
  row.id = 1;
  {
    Stmt head(db_, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1");
    if (auto s = head.prepared(); !s.ok()) return s;
    int rc = head.step();
    if (rc == SQLITE_ROW) {
      row.id = head.i64(0) + 1;
      row.prev_hash = head.text(1);
    } else if (rc != SQLITE_DONE) {
      return sqliteError(db_, "audit head");
    }
  }
  row.hash = auditRowHash(row);
  row.mac = audit_key_.empty() ? std::string() : auditRowMac(audit_key_, row);
  Stmt ins(db_, R"sql(
      INSERT INTO audit(id, at_unix_ms, operator, action, target, reason, outcome, detail,
                        prev_hash, hash, mac)
      VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11))sql");
  if (auto s = ins.prepared(); !s.ok()) return s;
  ins.bind(1, row.id);
  ins.bind(2, row.at_unix_ms);
  ins.bind(3, row.operator_name);
  ins.bind(4, row.action);
  ins.bind(5, row.target);
  ins.bind(6, row.reason);
  ins.bind(7, row.outcome);
  ins.bind(8, row.detail);
  ins.bind(9, row.prev_hash);
  ins.bind(10, row.hash);
  ins.bind(11, row.mac);
  if (auto s = ins.run(); !s.ok()) return s;
  return row;
}

absl::Status SqliteStore::startKeyedChainLocked() {
  if (audit_key_.empty()) return absl::OkStatus();
  int64_t last_id = 0;
  {
    Stmt head(db_, "SELECT id, mac FROM audit ORDER BY id DESC LIMIT 1");
    if (auto s = head.prepared(); !s.ok()) return s;
    int rc = head.step();
    if (rc == SQLITE_DONE) return absl::OkStatus();   // empty: keyed from the first row
    if (rc != SQLITE_ROW) return sqliteError(db_, "audit head");
    if (!head.text(1).empty()) return absl::OkStatus();   // already keyed
    last_id = head.i64(0);
  }
  AuditEntry marker;
  marker.at_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  marker.operator_name = "controller";
  marker.action = kAuditKeyedAction;
  marker.outcome = "ok";
  marker.detail = fmt::format(
      "keyed chaining (HMAC-SHA256) starts here, key id {}; rows up to {} carry no MAC and are "
      "covered by this row's MAC through the hash chain",
      auditKeyId(audit_key_), last_id);
  auto tx = Transaction::begin(db_);
  if (!tx.ok()) return tx.status();
  auto row = insertAuditLocked(marker);
  if (!row.ok()) return row.status();
  if (auto s = tx->commit(); !s.ok()) return s;
  return absl::OkStatus();
}

absl::StatusOr<AuditEntry> SqliteStore::appendAudit(const AuditEntry& entry) {
  std::lock_guard lock(mu_);
  auto tx = Transaction::begin(db_);
  if (!tx.ok()) return tx.status();
  auto row = insertAuditLocked(entry);
  if (!row.ok()) return row.status();
  if (auto s = tx->commit(); !s.ok()) return s;
  return row;
}

absl::StatusOr<AuditEntry> SqliteStore::commitChange(
    const std::map<std::string, bulkhead::v1::DesiredState>& states, const AuditEntry& entry) {
  std::lock_guard lock(mu_);
  auto tx = Transaction::begin(db_);
  if (!tx.ok()) return tx.status();
  for (const auto& [host, state] : states) {
    if (auto s = putDesiredStateLocked(host, state); !s.ok()) return s;
  }
  auto row = insertAuditLocked(entry);
  if (!row.ok()) return row.status();
  if (auto s = tx->commit(); !s.ok()) return s;
  return row;
}

namespace {
constexpr const char* kAuditColumns =
    "id, at_unix_ms, operator, action, target, reason, outcome, detail, prev_hash, hash, mac";

AuditEntry readAudit(Stmt& st) {
  AuditEntry e;
  e.id = st.i64(0);
  e.at_unix_ms = st.i64(1);
  e.operator_name = st.text(2);
  e.action = st.text(3);
  e.target = st.text(4);
  e.reason = st.text(5);
  e.outcome = st.text(6);
  e.detail = st.text(7);
  e.prev_hash = st.text(8);
  e.hash = st.text(9);
  e.mac = st.text(10);
  return e;
}
}  // namespace

absl::StatusOr<std::vector<AuditEntry>> SqliteStore::listAudit(size_t limit) {
  std::lock_guard lock(mu_);
  std::string sql =
      limit == 0 ? fmt::format("SELECT {} FROM audit ORDER BY id", kAuditColumns)
                 : fmt::format("SELECT * FROM (SELECT {} FROM audit ORDER BY id DESC LIMIT {}) "
                               "ORDER BY id",
                               kAuditColumns, limit);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  std::vector<AuditEntry> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(readAudit(st));
  if (rc != SQLITE_DONE) return sqliteError(db_, "list audit");
  return out;
}

absl::StatusOr<std::vector<AuditEntry>> SqliteStore::listAuditPage(int64_t before_id,
                                                                   size_t limit) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format(
      "SELECT * FROM (SELECT {} FROM audit WHERE ?1 <= 0 OR id < ?1 ORDER BY id DESC LIMIT ?2) "
      "ORDER BY id",
      kAuditColumns);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, before_id);
  st.bind(2, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  std::vector<AuditEntry> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(readAudit(st));
  if (rc != SQLITE_DONE) return sqliteError(db_, "list audit");
  return out;
}

absl::StatusOr<std::vector<AuditEntry>> SqliteStore::listAuditFrom(int64_t first_id) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format("SELECT {} FROM audit WHERE id >= ?1 ORDER BY id", kAuditColumns);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, first_id);
  std::vector<AuditEntry> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(readAudit(st));
  if (rc != SQLITE_DONE) return sqliteError(db_, "list audit");
  return out;
}

absl::StatusOr<AuditVerification> SqliteStore::verifyAudit(
    const std::optional<AuditCheckpoint>& checkpoint) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format("SELECT {} FROM audit ORDER BY id", kAuditColumns);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  AuditVerification v;
  v.keyed = !audit_key_.empty();
  auto bad = [&v](int64_t id, std::string problem) {
    v.ok = false;
    v.first_bad_id = id;
    v.problem = std::move(problem);
    return v;
  };
  std::string prev = kAuditGenesisHash;
  int64_t prev_id = 0;
  int64_t first_keyed_id = 0;
  std::optional<std::string> checkpoint_hash;   // the hash of row checkpoint->last_id, if seen
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) {
    AuditEntry e = readAudit(st);
    ++v.rows;
    if (e.prev_hash != prev) {
      return bad(e.id,
                 prev_id == 0
                     ? "prev_hash is not the chain start (earlier rows removed or row altered)"
                     : fmt::format("prev_hash does not match row {} (rows removed or altered)",
                                   prev_id));
    }
    if (auditRowHash(e) != e.hash) {
      return bad(e.id, "hash does not match the row's contents (row altered)");
    }
    if (v.keyed) {
      if (e.mac.empty() && first_keyed_id != 0) {
        return bad(e.id, fmt::format("row has no MAC although keyed chaining started at row {} "
                                     "(MAC removed: row altered)",
                                     first_keyed_id));
      }
      if (!e.mac.empty() && auditRowMac(audit_key_, e) != e.mac) {
        return bad(e.id, fmt::format(
                             "MAC does not match (row altered and hashes recomputed, or the "
                             "controller runs with an audit key other than the one that wrote "
                             "it; this key's id is {})",
                             auditKeyId(audit_key_)));
      }
      if (!e.mac.empty() && first_keyed_id == 0) first_keyed_id = e.id;
      if (e.mac.empty()) ++v.unkeyed_rows;
    }
    if (checkpoint && e.id == checkpoint->last_id) checkpoint_hash = e.hash;
    prev = e.hash;
    prev_id = e.id;
  }
  if (rc != SQLITE_DONE) return sqliteError(db_, "verify audit");
  v.last_id = prev_id;
  v.last_hash = prev_id == 0 ? std::string() : prev;
  if (v.keyed && v.rows > 0 && first_keyed_id == 0) {
    return bad(prev_id, "no row carries a MAC: the keyed part of the chain was removed (rows "
                        "deleted, or MACs stripped)");
  }
  if (checkpoint) {
    if (!checkpoint_hash) {
      return bad(checkpoint->last_id,
                 fmt::format("rows missing at the tail: the checkpoint ends at row {} but the "
                             "table ends at row {}",
                             checkpoint->last_id, prev_id));
    }
    if (*checkpoint_hash != checkpoint->last_hash) {
      return bad(checkpoint->last_id,
                 fmt::format("row {} differs from the checkpoint (hash {} there, {} here): "
                             "rows replaced at the tail",
                             checkpoint->last_id, checkpoint->last_hash, *checkpoint_hash));
    }
  }
  return v;
}

absl::Status SqliteStore::putDesiredStateLocked(const std::string& host_id,
                                                const bulkhead::v1::DesiredState& state) {
  Stmt st(db_, R"sql(
      INSERT INTO desired_state(host_id, generation, state) VALUES(?1, ?2, ?3)
      ON CONFLICT(host_id) DO UPDATE SET generation=excluded.generation, state=excluded.state)sql");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  st.bind(2, static_cast<int64_t>(state.generation()));
  st.bindBlob(3, state.SerializeAsString());
  return st.run();
}

absl::Status SqliteStore::saveDesiredState(const std::string& host_id,
                                           const bulkhead::v1::DesiredState& state) {
  std::lock_guard lock(mu_);
  return putDesiredStateLocked(host_id, state);
}

absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>>
SqliteStore::loadDesiredStates() {
  std::lock_guard lock(mu_);
  Stmt st(db_, "SELECT host_id, state FROM desired_state");
  if (auto s = st.prepared(); !s.ok()) return s;
  std::map<std::string, bulkhead::v1::DesiredState> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) {
    bulkhead::v1::DesiredState d;
    if (!d.ParseFromString(st.text(1))) {
      return absl::DataLossError(
          fmt::format("desired_state: row for host \"{}\" does not parse", st.text(0)));
    }
    out[st.text(0)] = std::move(d);
  }
  if (rc != SQLITE_DONE) return sqliteError(db_, "load desired states");
  return out;
}

// --- evidence ---

namespace {

constexpr const char* kCaptureColumns =
    "capture_id, host_id, requested_by, reason, requested_at, command_id, state";
constexpr const char* kEvidenceColumns =
    "id, capture_id, host_id, requested_by, reason, requested_at, collected_at, received_at, "
    "size, manifest_sha256, files, signature_ok, collector_errors, file_name, clock_offset_ms, "
    "path";
constexpr const char* kCustodyColumns =
    "rowid, evidence_id, at, actor, action, detail, prev_hash, hash";

EvidenceRow readEvidence(Stmt& st) {
  EvidenceRow r;
  r.id = st.text(0);
  r.capture_id = st.text(1);
  r.host_id = st.text(2);
  r.requested_by = st.text(3);
  r.reason = st.text(4);
  r.requested_at_unix_ms = st.i64(5);
  r.collected_at_unix_ms = st.i64(6);
  r.received_at_unix_ms = st.i64(7);
  r.size = static_cast<uint64_t>(st.i64(8));
  r.manifest_sha256 = st.text(9);
  r.files = static_cast<uint32_t>(st.i64(10));
  r.signature_ok = st.i64(11) != 0;
  auto errors = nlohmann::json::parse(st.text(12), nullptr, false);
  if (errors.is_array()) {
    for (const auto& e : errors) {
      if (e.is_string()) r.collector_errors.push_back(e.get<std::string>());
    }
  }
  r.file_name = st.text(13);
  r.clock_offset_ms = st.i64(14);
  r.path = st.text(15);
  return r;
}

CustodyEntry readCustody(Stmt& st) {
  CustodyEntry e;
  e.id = st.i64(0);
  e.evidence_id = st.text(1);
  e.at_unix_ms = st.i64(2);
  e.actor = st.text(3);
  e.action = st.text(4);
  e.detail = st.text(5);
  e.prev_hash = st.text(6);
  e.hash = st.text(7);
  return e;
}

bool isHex(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

absl::Status SqliteStore::addCapture(const CaptureRow& c) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format("INSERT INTO captures({}) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                kCaptureColumns);
  {
    Stmt exists(db_, "SELECT 1 FROM captures WHERE capture_id = ?1");
    if (auto s = exists.prepared(); !s.ok()) return s;
    exists.bind(1, c.capture_id);
    if (exists.step() == SQLITE_ROW) {
      return absl::AlreadyExistsError(fmt::format("capture \"{}\" exists", c.capture_id));
    }
  }
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, c.capture_id);
  st.bind(2, c.host_id);
  st.bind(3, c.requested_by);
  st.bind(4, c.reason);
  st.bind(5, c.requested_at_unix_ms);
  st.bind(6, c.command_id);
  st.bind(7, c.state);
  return st.run();
}

absl::StatusOr<CaptureRow> SqliteStore::getCapture(const std::string& capture_id) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format("SELECT {} FROM captures WHERE capture_id = ?1", kCaptureColumns);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, capture_id);
  int rc = st.step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(fmt::format("no capture \"{}\" was requested", capture_id));
  }
  if (rc != SQLITE_ROW) return sqliteError(db_, "get capture");
  CaptureRow c;
  c.capture_id = st.text(0);
  c.host_id = st.text(1);
  c.requested_by = st.text(2);
  c.reason = st.text(3);
  c.requested_at_unix_ms = st.i64(4);
  c.command_id = st.text(5);
  c.state = st.text(6);
  return c;
}

absl::Status SqliteStore::setCaptureState(const std::string& capture_id,
                                          const std::string& state) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "UPDATE captures SET state = ?2 WHERE capture_id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, capture_id);
  st.bind(2, state);
  if (auto s = st.run(); !s.ok()) return s;
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError(fmt::format("no capture \"{}\" was requested", capture_id));
  }
  return absl::OkStatus();
}

absl::StatusOr<CustodyEntry> SqliteStore::insertCustodyLocked(const CustodyEntry& event) {
  CustodyEntry e = event;
  e.prev_hash = e.evidence_id;
  {
    Stmt head(db_, "SELECT hash FROM custody WHERE evidence_id = ?1 ORDER BY rowid DESC LIMIT 1");
    if (auto s = head.prepared(); !s.ok()) return s;
    head.bind(1, e.evidence_id);
    int rc = head.step();
    if (rc == SQLITE_ROW) {
      e.prev_hash = head.text(0);
    } else if (rc != SQLITE_DONE) {
      return sqliteError(db_, "custody head");
    }
  }
  e.hash = custodyEventHash(e);
  Stmt ins(db_, R"sql(
      INSERT INTO custody(evidence_id, at, actor, action, detail, prev_hash, hash)
      VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7))sql");
  if (auto s = ins.prepared(); !s.ok()) return s;
  ins.bind(1, e.evidence_id);
  ins.bind(2, e.at_unix_ms);
  ins.bind(3, e.actor);
  ins.bind(4, e.action);
  ins.bind(5, e.detail);
  ins.bind(6, e.prev_hash);
  ins.bind(7, e.hash);
  if (auto s = ins.run(); !s.ok()) return s;
  e.id = sqlite3_last_insert_rowid(db_);
  return e;
}

absl::StatusOr<std::vector<CustodyEntry>> SqliteStore::addEvidence(
    const EvidenceRow& r, const std::vector<CustodyEntry>& events) {
  std::lock_guard lock(mu_);
  auto tx = Transaction::begin(db_);
  if (!tx.ok()) return tx.status();
  {
    Stmt exists(db_, "SELECT 1 FROM evidence WHERE id = ?1");
    if (auto s = exists.prepared(); !s.ok()) return s;
    exists.bind(1, r.id);
    if (exists.step() == SQLITE_ROW) {
      return absl::AlreadyExistsError(fmt::format("evidence {} is already stored", r.id));
    }
  }
  std::string sql = fmt::format(
      "INSERT INTO evidence({}) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
      "?14, ?15, ?16)",
      kEvidenceColumns);
  Stmt ins(db_, sql.c_str());
  if (auto s = ins.prepared(); !s.ok()) return s;
  ins.bind(1, r.id);
  ins.bind(2, r.capture_id);
  ins.bind(3, r.host_id);
  ins.bind(4, r.requested_by);
  ins.bind(5, r.reason);
  ins.bind(6, r.requested_at_unix_ms);
  ins.bind(7, r.collected_at_unix_ms);
  ins.bind(8, r.received_at_unix_ms);
  ins.bind(9, static_cast<int64_t>(r.size));
  ins.bind(10, r.manifest_sha256);
  ins.bind(11, static_cast<int64_t>(r.files));
  ins.bind(12, static_cast<int64_t>(r.signature_ok ? 1 : 0));
  ins.bind(13, nlohmann::json(r.collector_errors).dump());
  ins.bind(14, r.file_name);
  ins.bind(15, r.clock_offset_ms);
  ins.bind(16, r.path);
  if (auto s = ins.run(); !s.ok()) return s;
  std::vector<CustodyEntry> out;
  for (CustodyEntry e : events) {
    e.evidence_id = r.id;
    auto row = insertCustodyLocked(e);
    if (!row.ok()) return row.status();
    out.push_back(*std::move(row));
  }
  Stmt state(db_, "UPDATE captures SET state = 'received' WHERE capture_id = ?1");
  if (auto s = state.prepared(); !s.ok()) return s;
  state.bind(1, r.capture_id);
  if (auto s = state.run(); !s.ok()) return s;
  if (auto s = tx->commit(); !s.ok()) return s;
  return out;
}

absl::StatusOr<CustodyEntry> SqliteStore::appendCustody(const CustodyEntry& event) {
  std::lock_guard lock(mu_);
  auto tx = Transaction::begin(db_);
  if (!tx.ok()) return tx.status();
  {
    Stmt exists(db_, "SELECT 1 FROM evidence WHERE id = ?1");
    if (auto s = exists.prepared(); !s.ok()) return s;
    exists.bind(1, event.evidence_id);
    if (exists.step() != SQLITE_ROW) {
      return absl::NotFoundError(fmt::format("no evidence with id {}", event.evidence_id));
    }
  }
  auto row = insertCustodyLocked(event);
  if (!row.ok()) return row.status();
  if (auto s = tx->commit(); !s.ok()) return s;
  return row;
}

absl::StatusOr<std::vector<EvidenceRow>> SqliteStore::listEvidence(const std::string& host_id) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format(
      "SELECT {} FROM evidence WHERE ?1 = '' OR host_id = ?1 ORDER BY received_at, id",
      kEvidenceColumns);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  std::vector<EvidenceRow> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(readEvidence(st));
  if (rc != SQLITE_DONE) return sqliteError(db_, "list evidence");
  return out;
}

absl::StatusOr<EvidenceRow> SqliteStore::getEvidence(const std::string& id_or_prefix) {
  std::string want = id_or_prefix;
  for (char& ch : want) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (!isHex(want) || want.size() > 64) {
    return absl::InvalidArgumentError(fmt::format(
        "evidence id \"{}\": expected hex digits (a SHA-256, or a prefix of one)", id_or_prefix));
  }
  if (want.size() < 8) {
    return absl::InvalidArgumentError(fmt::format(
        "evidence id \"{}\": give at least 8 hex digits", id_or_prefix));
  }
  std::lock_guard lock(mu_);
  std::string sql = fmt::format(
      "SELECT {} FROM evidence WHERE substr(id, 1, ?2) = ?1 ORDER BY id LIMIT 2", kEvidenceColumns);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, want);
  st.bind(2, static_cast<int64_t>(want.size()));
  std::vector<EvidenceRow> found;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) found.push_back(readEvidence(st));
  if (rc != SQLITE_DONE) return sqliteError(db_, "get evidence");
  if (found.empty()) return absl::NotFoundError(fmt::format("no evidence with id {}", want));
  if (found.size() > 1) {
    return absl::InvalidArgumentError(fmt::format(
        "evidence id {} is ambiguous: it matches {} and {} at least; give more digits", want,
        found[0].id, found[1].id));
  }
  return std::move(found[0]);
}

absl::StatusOr<uint64_t> SqliteStore::evidenceBytesOfHost(const std::string& host_id) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "SELECT COALESCE(SUM(size), 0) FROM evidence WHERE host_id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  if (st.step() != SQLITE_ROW) return sqliteError(db_, "evidence bytes of host");
  return static_cast<uint64_t>(st.i64(0));
}

absl::StatusOr<std::optional<EvidenceRow>> SqliteStore::evidenceForCapture(
    const std::string& capture_id) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format(
      "SELECT {} FROM evidence WHERE capture_id = ?1 ORDER BY received_at DESC LIMIT 1",
      kEvidenceColumns);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, capture_id);
  int rc = st.step();
  if (rc == SQLITE_DONE) return std::optional<EvidenceRow>();
  if (rc != SQLITE_ROW) return sqliteError(db_, "evidence for capture");
  return std::optional<EvidenceRow>(readEvidence(st));
}

absl::StatusOr<std::vector<CustodyEntry>> SqliteStore::listCustody(
    const std::string& evidence_id) {
  std::lock_guard lock(mu_);
  std::string sql =
      fmt::format("SELECT {} FROM custody WHERE evidence_id = ?1 ORDER BY rowid", kCustodyColumns);
  Stmt st(db_, sql.c_str());
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, evidence_id);
  std::vector<CustodyEntry> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(readCustody(st));
  if (rc != SQLITE_DONE) return sqliteError(db_, "list custody");
  return out;
}

absl::StatusOr<CustodyVerification> SqliteStore::verifyCustody(const std::string& evidence_id) {
  auto events = listCustody(evidence_id);
  if (!events.ok()) return events.status();
  CustodyVerification v;
  if (events->empty()) {
    v.ok = false;
    v.problem = fmt::format("evidence {} has no custody events (record removed)", evidence_id);
    return v;
  }
  std::string prev = evidence_id;
  int64_t prev_id = 0;
  for (const auto& e : *events) {
    ++v.events;
    if (e.prev_hash != prev) {
      v.ok = false;
      v.first_bad_id = e.id;
      v.problem = prev_id == 0
                      ? fmt::format("custody event {} ({}): prev_hash is not the evidence id "
                                    "(earlier events removed or event altered)",
                                    e.id, e.action)
                      : fmt::format("custody event {} ({}): prev_hash does not match event {} "
                                    "(events removed or altered)",
                                    e.id, e.action, prev_id);
      return v;
    }
    if (custodyEventHash(e) != e.hash) {
      v.ok = false;
      v.first_bad_id = e.id;
      v.problem = fmt::format(
          "custody event {} ({}): hash does not match the event's contents (event altered)", e.id,
          e.action);
      return v;
    }
    prev = e.hash;
    prev_id = e.id;
  }
  return v;
}

}  // namespace bulkhead::controller
