// SqlAudit (sql_tables.h).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/format.h"
#include "controller/core/hash_chain.h"
#include "controller/store/audit_key.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {
namespace {

using sql::Stmt;

constexpr const char* kAuditColumns =
    "id, at_unix_ms, operator, action, target, reason, outcome, detail, prev_hash, hash, mac, "
    "tenant, incident";

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
  e.tenant = st.text(11);
  e.incident = st.text(12);
  return e;
}

// The rows of `scope` whose id satisfies `id_condition` (on parameter ?1), as one SELECT per
// tenant (and one for the cross-tenant rows) joined with UNION ALL: each walks the
// (tenant, id) index, so a page costs the same in a table of millions of rows whatever the
// tenant's share. `order` ("ASC"/"DESC") and `limit` (a parameter, "" for none) apply to
// each part. Tenants are bound from ?`first` on by bindScope(), then the cross-tenant filter
// (parameters are numbered without gaps: PostgreSQL infers each one's type from its use).
std::string scopedRows(const AuditScope& scope, const std::string& id_condition,
                       const std::string& order, const std::string& limit, int first) {
  std::vector<std::string> parts;
  int n = first;
  for (size_t i = 0; i < scope.tenants.size(); ++i) {
    parts.push_back(
        fmt::format("SELECT * FROM (SELECT {} FROM audit WHERE tenant = ?{} AND {} "
                    "ORDER BY id {}{}) AS part",
                    kAuditColumns, n++, id_condition, order, limit));
  }
  if (scope.every_cross_tenant_row || !scope.cross_tenant_operator.empty()) {
    parts.push_back(
        fmt::format("SELECT * FROM (SELECT {} FROM audit WHERE tenant = '{}' AND {} "
                    "AND (?{} OR operator = ?{}) ORDER BY id {}{}) AS part",
                    kAuditColumns, kEveryTenant, id_condition, n, n + 1, order, limit));
  }
  std::string sql;
  for (const auto& part : parts) sql += (sql.empty() ? "" : " UNION ALL ") + part;
  return sql;
}

void bindScope(Stmt& st, const AuditScope& scope, int first) {
  int n = first;
  for (const std::string& t : scope.tenants) st.bind(n++, t);
  if (scope.every_cross_tenant_row || !scope.cross_tenant_operator.empty()) {
    st.bind(n, static_cast<int64_t>(scope.every_cross_tenant_row ? 1 : 0));
    st.bind(n + 1, scope.cross_tenant_operator);
  }
}

}  // namespace

absl::StatusOr<AuditEntry> SqlAudit::append(const AuditEntry& entry) {
  AuditEntry row = entry;
  row.prev_hash = kAuditGenesisHash;
  row.id = 1;
  {
    Stmt head(db_, "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1");
    if (auto s = head.prepared(); !s.ok()) return s;
    int rc = head.step();
    if (rc == sql::kRow) {
      row.id = head.i64(0) + 1;
      row.prev_hash = head.text(1);
    } else if (rc != sql::kDone) {
      return sql::error(db_, "audit head");
    }
  }
  ChainLink link = nextChainLink(row.prev_hash, auditRecord(row), key_);
  row.hash = std::move(link.hash);
  row.mac = std::move(link.mac);
  Stmt ins(db_, R"sql(
      INSERT INTO audit(id, at_unix_ms, operator, action, target, reason, outcome, detail,
                        prev_hash, hash, mac, tenant, incident)
      VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13))sql");
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
  ins.bind(12, row.tenant);
  ins.bind(13, row.incident);
  if (auto s = ins.run(); !s.ok()) return s;
  return row;
}

absl::StatusOr<std::vector<AuditEntry>> SqlAudit::ofIncident(const std::string& tenant,
                                                             const std::string& incident) {
  Stmt st(db_, fmt::format("SELECT {} FROM audit WHERE incident = ?2 AND tenant = ?1 ORDER BY id",
                           kAuditColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, tenant);
  st.bind(2, incident);
  return st.collect(readAudit, "list the audit rows of an incident");
}

absl::Status SqlAudit::startKeyedChain(int64_t now_unix_ms) {
  if (key_.empty()) return absl::OkStatus();
  int64_t last_id = 0;
  {
    Stmt head(db_, "SELECT id, mac FROM audit ORDER BY id DESC LIMIT 1");
    if (auto s = head.prepared(); !s.ok()) return s;
    int rc = head.step();
    if (rc == sql::kDone) return absl::OkStatus();  // empty: keyed from the first row
    if (rc != sql::kRow) return sql::error(db_, "audit head");
    if (!head.text(1).empty()) return absl::OkStatus();  // already keyed
    last_id = head.i64(0);
  }
  AuditEntry marker{
      .at_unix_ms = now_unix_ms,
      .operator_name = "controller",
      .action = kAuditKeyedAction,
      .outcome = "ok",
      .detail = fmt::format(
          "keyed chaining (HMAC-SHA256) starts here, key id {}; rows up to {} carry no MAC and "
          "are covered by this row's MAC through the hash chain",
          auditKeyId(key_), last_id)};
  return append(marker).status();
}

absl::StatusOr<std::vector<AuditEntry>> SqlAudit::list(size_t limit) {
  std::string sql = limit == 0
                        ? fmt::format("SELECT {} FROM audit ORDER BY id", kAuditColumns)
                        : fmt::format(
                              "SELECT * FROM (SELECT {} FROM audit ORDER BY id DESC LIMIT {}) "
                              "AS newest ORDER BY id",
                              kAuditColumns, limit);
  Stmt st(db_, sql);
  if (auto s = st.prepared(); !s.ok()) return s;
  return st.collect(readAudit, "list audit");
}

absl::StatusOr<std::vector<AuditEntry>> SqlAudit::page(int64_t before_id, size_t limit,
                                                       const AuditScope& scope) {
  // A plain bound on the id (not "?1 <= 0 OR ..."), so SQLite walks the index from it.
  const int64_t below = before_id > 0 ? before_id : INT64_MAX;
  const std::string rows =
      scope.tenants.empty()
          ? fmt::format("SELECT {} FROM audit WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                        kAuditColumns)
          : fmt::format("SELECT * FROM ({}) AS parts ORDER BY id DESC LIMIT ?2",
                        scopedRows(scope, "id < ?1", "DESC", " LIMIT ?2", 3));
  Stmt st(db_, fmt::format("SELECT * FROM ({}) AS page ORDER BY id", rows));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, below);
  st.bind(2, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  if (!scope.tenants.empty()) bindScope(st, scope, 3);
  return st.collect(readAudit, "list audit");
}

absl::StatusOr<std::vector<AuditEntry>> SqlAudit::from(int64_t first_id, const AuditScope& scope) {
  const std::string rows = scope.tenants.empty()
                               ? fmt::format("SELECT {} FROM audit WHERE id >= ?1", kAuditColumns)
                               : scopedRows(scope, "id >= ?1", "ASC", "", 2);
  Stmt st(db_, fmt::format("SELECT * FROM ({}) AS page ORDER BY id", rows));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, first_id);
  if (!scope.tenants.empty()) bindScope(st, scope, 2);
  return st.collect(readAudit, "list audit");
}

absl::StatusOr<std::vector<AuditEntry>> SqlAudit::after(int64_t after_id, size_t limit) {
  Stmt st(db_,
          fmt::format("SELECT {} FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2", kAuditColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, after_id);
  st.bind(2, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  return st.collect(readAudit, "list audit");
}

absl::StatusOr<AuditVerification> SqlAudit::verify(
    const std::optional<AuditCheckpoint>& checkpoint) {
  Stmt st(db_, fmt::format("SELECT {} FROM audit ORDER BY id", kAuditColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  ChainWording wording{
      .other_key = fmt::format("the controller runs with an audit key other than the one that "
                               "wrote it; this key's id is {}",
                               auditKeyId(key_))};
  std::optional<ChainCheckpoint> chain_checkpoint;
  if (checkpoint) chain_checkpoint = ChainCheckpoint{checkpoint->last_id, checkpoint->last_hash};
  ChainVerifier verifier(kAuditGenesisHash, key_, std::move(wording), chain_checkpoint);
  // Streamed row by row: the table can be far larger than memory wants to hold.
  int rc;
  while ((rc = st.step()) == sql::kRow) {
    AuditEntry e = readAudit(st);
    if (!verifier.add({.id = e.id,
                       .record = auditRecord(e),
                       .prev_hash = std::move(e.prev_hash),
                       .hash = std::move(e.hash),
                       .mac = std::move(e.mac)})) {
      break;
    }
  }
  if (rc != sql::kRow && rc != sql::kDone) return sql::error(db_, "verify audit");
  ChainVerification chain = verifier.finish();
  return AuditVerification{.ok = chain.ok,
                           .rows = chain.links,
                           .first_bad_id = chain.first_bad_id,
                           .problem = std::move(chain.problem),
                           .unkeyed_rows = chain.unkeyed_links,
                           .keyed = !key_.empty(),
                           .last_id = chain.last_id,
                           .last_hash = std::move(chain.last_hash)};
}

}  // namespace bulkhead::controller
