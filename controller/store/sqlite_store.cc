#include "controller/store/sqlite_store.h"

#include <utility>

#include "common/format.h"
#include "controller/store/sqlite_engine.h"
#include "controller/store/sqlite_migrations.h"

namespace bulkhead::controller {
namespace {

sqlite3* handleOf(sql::Db* db) { return static_cast<sqlite::SqliteDb*>(db)->handle(); }

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::create(const std::filesystem::path& path,
                                                                 SqliteStoreOptions options) {
  auto db = sqlite::openEngine(path);
  if (!db.ok()) return db.status();
  if (auto s = sqlite::migrate(db->get()); !s.ok()) {
    return absl::PermissionDeniedError(
        fmt::format("cannot use database {}: {}", path.string(), s.message()));
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(*std::move(db), std::move(options.audit_key)));
  if (auto s = store->startKeyedChain(); !s.ok()) {
    return absl::PermissionDeniedError(fmt::format(
        "cannot use database {}: starting the keyed audit chain: {}", path.string(), s.message()));
  }
  return store;
}

int SqliteStore::latestSchemaVersion() { return sqlite::latestSchemaVersion(); }

absl::StatusOr<int> SqliteStore::schemaVersion() {
  std::lock_guard lock(mu_);
  return sqlite::schemaVersion(db_.get());
}

absl::StatusOr<int64_t> SqliteStore::pragmaForTest(const std::string& name) {
  std::lock_guard lock(mu_);
  std::string sql = fmt::format("PRAGMA {}", name);
  sqlite::Stmt st(handleOf(db_.get()), sql);
  if (auto s = st.prepared(); !s.ok()) return s;
  if (st.step() != SQLITE_ROW) return sqlite::error(handleOf(db_.get()), sql);
  return st.i64(0);
}

absl::Status SqliteStore::rewriteSchemaVersion() {
  return sql::inTransaction(db_.get(), [this]() -> absl::Status {
    auto version = sqlite::schemaVersion(db_.get());
    if (!version.ok()) return version.status();
    return db_->exec(fmt::format("PRAGMA user_version = {}", *version));
  });
}

}  // namespace bulkhead::controller
