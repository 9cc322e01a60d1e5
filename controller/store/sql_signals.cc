// SqlSignals (sql_tables.h).
#include "common/format.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {
namespace {

using sql::Stmt;

absl::StatusOr<SignalRow> readSignal(Stmt& st) {
  SignalRow row;
  row.idempotency_key = st.text(0);
  if (!row.record.ParseFromString(st.text(1))) {
    return absl::DataLossError("signals: a stored record does not parse");
  }
  return row;
}

}  // namespace

std::string tenantFilter(const std::vector<std::string>& tenants, int first_parameter) {
  if (tenants.empty()) return "";
  std::string out = " AND tenant IN (";
  for (size_t i = 0; i < tenants.size(); ++i) {
    out += fmt::format("{}?{}", i == 0 ? "" : ", ", first_parameter + static_cast<int>(i));
  }
  return out + ")";
}

absl::StatusOr<std::optional<SignalRow>> SqlSignals::findByKey(const std::string& key,
                                                               int64_t since_unix_ms) {
  Stmt st(db_,
          "SELECT idempotency_key, record FROM signals WHERE idempotency_key = ?1 AND "
          "received_at >= ?2 ORDER BY received_at DESC LIMIT 1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, key);
  st.bind(2, since_unix_ms);
  int rc = st.step();
  if (rc == sql::kDone) return std::optional<SignalRow>();
  if (rc != sql::kRow) return sql::error(db_, "find signal");
  auto row = readSignal(st);
  if (!row.ok()) return row.status();
  return std::optional<SignalRow>(std::move(*row));
}

absl::Status SqlSignals::add(const SignalRow& row) {
  Stmt st(db_,
          "INSERT INTO signals(id, received_at, idempotency_key, record, tenant) "
          "VALUES(?1, ?2, ?3, ?4, ?5)");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.record.signal_id());
  st.bind(2, row.record.received_unix_ms());
  st.bind(3, row.idempotency_key);
  st.bindBlob(4, row.record.SerializeAsString());
  st.bind(5, tenantOrDefault(row.record.tenant()));
  return st.run();
}

absl::Status SqlSignals::update(const SignalRow& row) {
  Stmt st(db_, "UPDATE signals SET record = ?2 WHERE id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.record.signal_id());
  st.bindBlob(2, row.record.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::NotFoundError(fmt::format("no signal \"{}\"", row.record.signal_id()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SignalRow>> SqlSignals::list(int64_t since_unix_ms, size_t limit,
                                                        const std::vector<std::string>& tenants) {
  Stmt st(db_, "SELECT idempotency_key, record FROM signals WHERE received_at >= ?1" +
                   tenantFilter(tenants, 3) + " ORDER BY received_at DESC, rowid DESC LIMIT ?2");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, since_unix_ms);
  st.bind(2, static_cast<int64_t>(limit));
  for (size_t i = 0; i < tenants.size(); ++i) st.bind(3 + static_cast<int>(i), tenants[i]);
  std::vector<SignalRow> out;
  int rc;
  while ((rc = st.step()) == sql::kRow) {
    auto row = readSignal(st);
    if (!row.ok()) return row.status();
    out.push_back(std::move(*row));
  }
  if (rc != sql::kDone) return sql::error(db_, "list signals");
  return out;
}

absl::StatusOr<SignalRow> SqlSignals::get(const std::string& signal_id) {
  Stmt st(db_, "SELECT idempotency_key, record FROM signals WHERE id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, signal_id);
  int rc = st.step();
  if (rc == sql::kDone) return absl::NotFoundError(fmt::format("no signal \"{}\"", signal_id));
  if (rc != sql::kRow) return sql::error(db_, "get signal");
  return readSignal(st);
}

}  // namespace bulkhead::controller
