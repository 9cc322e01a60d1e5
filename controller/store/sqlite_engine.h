// The SQLite engine of the store's tables (sql_db.h) over one connection of sqlite_db.h.
// Internal to controller/store.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controller/store/sql_db.h"
#include "controller/store/sqlite_db.h"

namespace bulkhead::controller::sqlite {

class SqliteDb final : public sql::Db {
 public:
  explicit SqliteDb(Connection connection) : connection_(std::move(connection)) {}
  std::unique_ptr<sql::Cursor> prepare(const std::string& sql) override;
  absl::Status exec(const std::string& sql) override;
  absl::Status begin() override;  // BEGIN IMMEDIATE
  absl::Status commit() override;
  void rollback() override;
  int64_t changes() override;
  std::string lastError() override;
  sqlite3* handle() const { return connection_.get(); }

 private:
  Connection connection_;
};

// sqlite::open() as an engine.
absl::StatusOr<std::unique_ptr<SqliteDb>> openEngine(const std::filesystem::path& path);

}  // namespace bulkhead::controller::sqlite
