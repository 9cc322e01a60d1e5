// SqlJoinTokens (sql_tables.h).
#include "common/format.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {
namespace {

using sql::Stmt;

absl::StatusOr<JoinTokenRow> readToken(Stmt& st) {
  JoinTokenRow row;
  row.secret_sha256 = st.text(0);
  if (!row.record.ParseFromString(st.text(1))) {
    return absl::DataLossError("join_tokens: a stored record does not parse");
  }
  return row;
}

}  // namespace

absl::Status SqlJoinTokens::add(const JoinTokenRow& row) {
  Stmt st(db_,
          "INSERT INTO join_tokens(id, secret_sha256, created_at, record) VALUES(?1, ?2, ?3, ?4) "
          "ON CONFLICT DO NOTHING");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.record.token_id());
  st.bind(2, row.secret_sha256);
  st.bind(3, row.record.created_unix_ms());
  st.bindBlob(4, row.record.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::AlreadyExistsError(
        fmt::format("a join token \"{}\" exists", row.record.token_id()));
  }
  return absl::OkStatus();
}

absl::Status SqlJoinTokens::update(const JoinTokenRow& row) {
  Stmt st(db_, "UPDATE join_tokens SET record = ?2 WHERE id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.record.token_id());
  st.bindBlob(2, row.record.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::NotFoundError(fmt::format("no join token \"{}\"", row.record.token_id()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<JoinTokenRow>> SqlJoinTokens::find(const std::string& token_id) {
  Stmt st(db_, "SELECT secret_sha256, record FROM join_tokens WHERE id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, token_id);
  const int rc = st.step();
  if (rc == sql::kDone) return std::optional<JoinTokenRow>();
  if (rc != sql::kRow) return sql::error(db_, "find join token");
  auto row = readToken(st);
  if (!row.ok()) return row.status();
  return std::optional<JoinTokenRow>(*std::move(row));
}

absl::StatusOr<std::vector<JoinTokenRow>> SqlJoinTokens::list() {
  Stmt st(db_, "SELECT secret_sha256, record FROM join_tokens ORDER BY created_at DESC, id");
  if (auto s = st.prepared(); !s.ok()) return s;
  std::vector<JoinTokenRow> out;
  int rc;
  while ((rc = st.step()) == sql::kRow) {
    auto row = readToken(st);
    if (!row.ok()) return row.status();
    out.push_back(*std::move(row));
  }
  if (rc != sql::kDone) return sql::error(db_, "list join tokens");
  return out;
}

absl::StatusOr<bool> SqlJoinTokens::hostKnown(const std::string& host_id) {
  Stmt st(db_,
          "SELECT EXISTS(SELECT 1 FROM enrollments WHERE host_id = ?1) OR "
          "EXISTS(SELECT 1 FROM hosts WHERE host_id = ?1)");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  if (st.step() != sql::kRow) return sql::error(db_, "look up host");
  return st.i64(0) != 0;
}

absl::Status SqlJoinTokens::addEnrollment(const EnrollmentRow& row) {
  Stmt st(db_,
          "INSERT INTO enrollments(host_id, token_id, serial, labels, enrolled_at, tenant) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.host_id);
  st.bind(2, row.token_id);
  st.bind(3, row.serial);
  st.bind(4, sql::labelsJson(row.labels));
  st.bind(5, row.enrolled_unix_ms);
  st.bind(6, row.tenant);
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::AlreadyExistsError(fmt::format("host \"{}\" is enrolled already", row.host_id));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> SqlJoinTokens::operatorKnown(const std::string& name) {
  Stmt st(db_,
          "SELECT EXISTS(SELECT 1 FROM operator_enrollments WHERE name = ?1) OR "
          "EXISTS(SELECT 1 FROM role_bindings WHERE operator = ?1)");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, name);
  if (st.step() != sql::kRow) return sql::error(db_, "look up operator");
  return st.i64(0) != 0;
}

absl::Status SqlJoinTokens::addOperatorEnrollment(const OperatorEnrollmentRow& row) {
  Stmt st(db_,
          "INSERT INTO operator_enrollments(name, token_id, serial, tenant, enrolled_at) "
          "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.name);
  st.bind(2, row.token_id);
  st.bind(3, row.serial);
  st.bind(4, row.binding.tenant());
  st.bind(5, row.enrolled_unix_ms);
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::AlreadyExistsError(fmt::format("operator \"{}\" is enrolled already", row.name));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<EnrollmentRow>> SqlJoinTokens::findEnrollment(
    const std::string& host_id) {
  Stmt st(db_,
          "SELECT host_id, token_id, serial, labels, enrolled_at, tenant FROM enrollments "
          "WHERE host_id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  const int rc = st.step();
  if (rc == sql::kDone) return std::optional<EnrollmentRow>();
  if (rc != sql::kRow) return sql::error(db_, "find enrollment");
  EnrollmentRow row{.host_id = st.text(0),
                    .token_id = st.text(1),
                    .serial = st.text(2),
                    .enrolled_unix_ms = st.i64(4),
                    .tenant = st.text(5)};
  auto labels = sql::readLabelsJson(st.text(3), "enrollments");
  if (!labels.ok()) return labels.status();
  row.labels = *std::move(labels);
  return std::optional<EnrollmentRow>(std::move(row));
}

}  // namespace bulkhead::controller
