#include "controller/store/sql_db.h"

#include <nlohmann/json.hpp>

#include "common/format.h"

namespace bulkhead::controller::sql {

absl::Status error(Db* db, std::string_view what) {
  return absl::InternalError(fmt::format("{}: {}", what, db->lastError()));
}

void Stmt::bindStrings(int i, const std::vector<std::string>& v) {
  bind(i, nlohmann::json(v).dump());
}

absl::Status Stmt::run() {
  const int rc = step();
  absl::Status s = rc == kDone || rc == kRow ? absl::OkStatus() : error(db_, "write");
  cursor_->reset();
  return s;
}

std::vector<std::string> Stmt::strings(int col) {
  std::vector<std::string> out;
  auto list = nlohmann::json::parse(text(col), nullptr, false);
  if (!list.is_array()) return out;
  for (const auto& e : list) {
    if (e.is_string()) out.push_back(e.get<std::string>());
  }
  return out;
}

absl::StatusOr<Transaction> Transaction::begin(Db* db) {
  if (auto s = db->begin(); !s.ok()) return s;
  return Transaction(db);
}

Transaction::~Transaction() {
  if (db_ != nullptr) db_->rollback();
}

absl::Status Transaction::commit() {
  if (auto s = db_->commit(); !s.ok()) return s;
  db_ = nullptr;
  return absl::OkStatus();
}

absl::Status migrate(Db* db, const std::vector<const char*>& steps,
                     const std::function<absl::StatusOr<int>()>& version,
                     const std::function<std::string(int)>& set_version) {
  const int latest = static_cast<int>(steps.size());
  return inTransaction(db, [&]() -> absl::Status {
    auto current = version();
    if (!current.ok()) return current.status();
    if (*current > latest) {
      return absl::FailedPreconditionError(fmt::format(
          "schema version {} is newer than this controller knows ({})", *current, latest));
    }
    for (int v = *current; v < latest; ++v) {
      if (auto s = db->exec(steps[static_cast<size_t>(v)]); !s.ok()) {
        return absl::InternalError(fmt::format("migration to schema {}: {}", v + 1, s.message()));
      }
    }
    return db->exec(set_version(latest));
  });
}

absl::StatusOr<bool> exists(Db* db, const std::string& sql, const std::string& key) {
  Stmt st(db, sql);
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, key);
  const int rc = st.step();
  if (rc != kRow && rc != kDone) return error(db, sql);
  return rc == kRow;
}

std::string labelsJson(const std::map<std::string, std::string>& labels) {
  return nlohmann::json(labels).dump();
}

absl::StatusOr<std::map<std::string, std::string>> readLabelsJson(const std::string& text,
                                                                  std::string_view table) {
  const auto doc = nlohmann::json::parse(text, nullptr, false);
  if (!doc.is_object()) {
    return absl::DataLossError(fmt::format("{}: stored labels do not parse", table));
  }
  std::map<std::string, std::string> labels;
  for (const auto& [k, v] : doc.items()) {
    if (v.is_string()) labels[k] = v.get<std::string>();
  }
  return labels;
}

}  // namespace bulkhead::controller::sql
