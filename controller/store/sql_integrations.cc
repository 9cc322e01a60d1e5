// SqlIntegrations (sql_tables.h).
#include "common/format.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {
namespace {

using sql::Stmt;

constexpr char kColumns[] = "token_sha256, record";

absl::StatusOr<IntegrationRow> readIntegration(Stmt& st) {
  IntegrationRow row;
  row.token_sha256 = st.text(0);
  if (!row.record.ParseFromString(st.text(1))) {
    return absl::DataLossError("integrations: a stored record does not parse");
  }
  return row;
}

}  // namespace

absl::Status SqlIntegrations::add(const IntegrationRow& row) {
  Stmt st(db_,
          "INSERT INTO integrations(name, format, token_sha256, created_at, revoked_at, record) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.record.name());
  st.bind(2, row.record.format());
  st.bind(3, row.token_sha256);
  st.bind(4, row.record.created_unix_ms());
  st.bind(5, row.record.revoked_unix_ms());
  st.bindBlob(6, row.record.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::AlreadyExistsError(
        fmt::format("an integration named \"{}\" exists (revoked ones too keep their name)",
                    row.record.name()));
  }
  return absl::OkStatus();
}

absl::Status SqlIntegrations::update(const IntegrationRow& row) {
  Stmt st(db_, "UPDATE integrations SET revoked_at = ?2, record = ?3 WHERE name = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.record.name());
  st.bind(2, row.record.revoked_unix_ms());
  st.bindBlob(3, row.record.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::NotFoundError(fmt::format("no integration \"{}\"", row.record.name()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<IntegrationRow>> SqlIntegrations::find(const std::string& name) {
  Stmt st(db_, fmt::format("SELECT {} FROM integrations WHERE name = ?1", kColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, name);
  int rc = st.step();
  if (rc == sql::kDone) return std::optional<IntegrationRow>();
  if (rc != sql::kRow) return sql::error(db_, "find integration");
  auto row = readIntegration(st);
  if (!row.ok()) return row.status();
  return std::optional<IntegrationRow>(std::move(*row));
}

absl::StatusOr<std::vector<IntegrationRow>> SqlIntegrations::list() {
  Stmt st(db_, fmt::format("SELECT {} FROM integrations ORDER BY name", kColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  std::vector<IntegrationRow> out;
  int rc;
  while ((rc = st.step()) == sql::kRow) {
    auto row = readIntegration(st);
    if (!row.ok()) return row.status();
    out.push_back(std::move(*row));
  }
  if (rc != sql::kDone) return sql::error(db_, "list integrations");
  return out;
}

}  // namespace bulkhead::controller
