// SqlApprovals (sql_tables.h).
#include <cctype>
#include <string_view>

#include "common/format.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
using sql::Stmt;

// The state column: the enum's name after the prefix, lower case ("pending").
std::string stateText(v1::ApprovalState state) {
  std::string name = v1::ApprovalState_Name(state);
  name = name.substr(std::string_view("APPROVAL_STATE_").size());
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

absl::StatusOr<v1::Approval> readApproval(Stmt& st) {
  v1::Approval out;
  if (!out.ParseFromString(st.text(0))) {
    return absl::DataLossError("approvals: a stored record does not parse");
  }
  return out;
}

absl::StatusOr<std::vector<v1::Approval>> readAll(sql::Db* db, Stmt& st, std::string_view what) {
  std::vector<v1::Approval> out;
  int rc;
  while ((rc = st.step()) == sql::kRow) {
    auto a = readApproval(st);
    if (!a.ok()) return a.status();
    out.push_back(*std::move(a));
  }
  if (rc != sql::kDone) return sql::error(db, what);
  return out;
}

}  // namespace

absl::Status SqlApprovals::add(const v1::Approval& a) {
  auto taken = sql::exists(db_, "SELECT 1 FROM approvals WHERE id = ?1", a.approval_id());
  if (!taken.ok()) return taken.status();
  if (*taken) {
    return absl::AlreadyExistsError(fmt::format("approval \"{}\" exists", a.approval_id()));
  }
  Stmt st(db_,
          "INSERT INTO approvals(id, signal_id, requested_at, expires_at, state, record, tenant) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, a.approval_id());
  st.bind(2, a.signal_id());
  st.bind(3, a.requested_unix_ms());
  st.bind(4, a.expires_unix_ms());
  st.bind(5, stateText(a.state()));
  st.bindBlob(6, a.SerializeAsString());
  st.bind(7, tenantOrDefault(a.tenant()));
  return st.run();
}

absl::StatusOr<v1::Approval> SqlApprovals::get(const std::string& approval_id) {
  Stmt st(db_, "SELECT record FROM approvals WHERE id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, approval_id);
  int rc = st.step();
  if (rc == sql::kDone) {
    return absl::NotFoundError(fmt::format("no approval \"{}\"", approval_id));
  }
  if (rc != sql::kRow) return sql::error(db_, "get approval");
  return readApproval(st);
}

absl::StatusOr<std::vector<v1::Approval>> SqlApprovals::list(
    bool pending_only, size_t limit, const std::vector<std::string>& tenants) {
  const std::string filter = tenantFilter(tenants, 2);
  Stmt st(db_, pending_only ? "SELECT record FROM approvals WHERE state = 'pending'" + filter +
                                  " ORDER BY expires_at, rowid LIMIT ?1"
                            : "SELECT record FROM approvals WHERE TRUE" + filter +
                                  " ORDER BY requested_at DESC, rowid DESC LIMIT ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, static_cast<int64_t>(limit));
  for (size_t i = 0; i < tenants.size(); ++i) st.bind(2 + static_cast<int>(i), tenants[i]);
  return readAll(db_, st, "list approvals");
}

absl::StatusOr<std::vector<v1::Approval>> SqlApprovals::expired(int64_t now_unix_ms, size_t limit) {
  Stmt st(db_,
          "SELECT record FROM approvals WHERE state = 'pending' AND expires_at <= ?1 "
          "ORDER BY expires_at, rowid LIMIT ?2");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, now_unix_ms);
  st.bind(2, static_cast<int64_t>(limit));
  return readAll(db_, st, "list expired approvals");
}

absl::Status SqlApprovals::replaceIf(const v1::Approval& a, v1::ApprovalState expected_state) {
  Stmt st(db_, "UPDATE approvals SET state = ?2, record = ?3 WHERE id = ?1 AND state = ?4");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, a.approval_id());
  st.bind(2, stateText(a.state()));
  st.bindBlob(3, a.SerializeAsString());
  st.bind(4, stateText(expected_state));
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 1) return absl::OkStatus();
  auto stored = get(a.approval_id());
  if (!stored.ok()) return stored.status();
  std::string by = stored->state() == v1::APPROVAL_STATE_EXPIRED ? " (rejected)"
                   : stored->decided_by().empty()                ? ""
                                                                 : " by " + stored->decided_by();
  return absl::FailedPreconditionError(
      fmt::format("approval {} is already {}{}", a.approval_id(), stateText(stored->state()), by));
}

}  // namespace bulkhead::controller
