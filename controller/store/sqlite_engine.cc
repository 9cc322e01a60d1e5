#include "controller/store/sqlite_engine.h"

static_assert(bulkhead::controller::sql::kRow == SQLITE_ROW);
static_assert(bulkhead::controller::sql::kDone == SQLITE_DONE);

namespace bulkhead::controller::sqlite {
namespace {

class SqliteCursor final : public sql::Cursor {
 public:
  SqliteCursor(sqlite3* db, const std::string& sql) : stmt_(db, sql) {}
  absl::Status prepared() const override { return stmt_.prepared(); }
  void bind(int i, int64_t v) override { stmt_.bind(i, v); }
  void bind(int i, const std::string& v) override { stmt_.bind(i, v); }
  void bindBlob(int i, const std::string& v) override { stmt_.bindBlob(i, v); }
  int step() override { return stmt_.step(); }
  void reset() override { stmt_.reset(); }
  int64_t i64(int col) override { return stmt_.i64(col); }
  std::string text(int col) override { return stmt_.text(col); }

 private:
  Stmt stmt_;
};

}  // namespace

std::unique_ptr<sql::Cursor> SqliteDb::prepare(const std::string& sql) {
  return std::make_unique<SqliteCursor>(connection_.get(), sql);
}

absl::Status SqliteDb::exec(const std::string& sql) {
  return sqlite::exec(connection_.get(), sql.c_str());
}

absl::Status SqliteDb::begin() { return sqlite::exec(connection_.get(), "BEGIN IMMEDIATE"); }

absl::Status SqliteDb::commit() { return sqlite::exec(connection_.get(), "COMMIT"); }

void SqliteDb::rollback() { sqlite::exec(connection_.get(), "ROLLBACK").IgnoreError(); }

int64_t SqliteDb::changes() { return sqlite3_changes(connection_.get()); }

std::string SqliteDb::lastError() { return sqlite3_errmsg(connection_.get()); }

absl::StatusOr<std::unique_ptr<SqliteDb>> openEngine(const std::filesystem::path& path) {
  auto connection = open(path);
  if (!connection.ok()) return connection.status();
  return std::make_unique<SqliteDb>(*std::move(connection));
}

}  // namespace bulkhead::controller::sqlite
