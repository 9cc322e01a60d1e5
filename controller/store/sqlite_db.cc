#include "controller/store/sqlite_db.h"

#include <mutex>
#include <unordered_map>

#include "common/format.h"

namespace bulkhead::controller::sqlite {
namespace {

struct CachedStatement {
  sqlite3_stmt* stmt = nullptr;
  bool in_use = false;
};
using StatementCache = std::unordered_map<std::string, CachedStatement>;

// Every connection's cache. Nodes of unordered_map never move, so a Stmt keeps a pointer to
// its entry's flag until it ends.
std::mutex cache_mu;
std::unordered_map<sqlite3*, StatementCache>& caches() {
  static auto* all = new std::unordered_map<sqlite3*, StatementCache>();
  return *all;
}

}  // namespace

void Close::operator()(sqlite3* db) const {
  {
    std::lock_guard lock(cache_mu);
    auto it = caches().find(db);
    if (it != caches().end()) {
      for (auto& [sql, cached] : it->second) sqlite3_finalize(cached.stmt);
      caches().erase(it);
    }
  }
  sqlite3_close_v2(db);
}

absl::Status exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return absl::InternalError(fmt::format("sqlite: {}", msg));
  }
  return absl::OkStatus();
}

absl::Status error(sqlite3* db, std::string_view what) {
  return absl::InternalError(fmt::format("{}: {}", what, sqlite3_errmsg(db)));
}

absl::StatusOr<Connection> open(const std::filesystem::path& path) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  Connection db(raw);
  if (rc != SQLITE_OK) {
    std::string msg = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    return absl::PermissionDeniedError(
        fmt::format("cannot open database {}: {}", path.string(), msg));
  }
  sqlite3_busy_timeout(db.get(), 5000);
  // journal_mode returns a row; exec() ignores it. A read-only file or directory fails here.
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (auto s = exec(db.get(), pragma); !s.ok()) {
      return absl::PermissionDeniedError(
          fmt::format("cannot use database {}: {}", path.string(), s.message()));
    }
  }
  Stmt check(db.get(), "PRAGMA journal_mode");
  if (check.prepared().ok() && check.step() == SQLITE_ROW && check.text(0) != "wal") {
    return absl::PermissionDeniedError(
        fmt::format("cannot use database {}: WAL journal mode unavailable (journal_mode={})",
                    path.string(), check.text(0)));
  }
  return db;
}

Stmt::Stmt(sqlite3* db, const char* sql) : db_(db) {
  {
    std::lock_guard lock(cache_mu);
    StatementCache& cache = caches()[db];
    auto it = cache.find(sql);
    if (it != cache.end() && !it->second.in_use) {
      it->second.in_use = true;
      in_use_ = &it->second.in_use;
      stmt_ = it->second.stmt;
      rc_ = SQLITE_OK;
      return;
    }
  }
  rc_ = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc_ != SQLITE_OK || stmt_ == nullptr) return;
  std::lock_guard lock(cache_mu);
  StatementCache& cache = caches()[db];
  if (cache.size() < kMaxCachedStatements && !cache.contains(sql)) {
    auto [it, added] = cache.emplace(sql, CachedStatement{stmt_, true});
    in_use_ = &it->second.in_use;
  }
}

Stmt::~Stmt() {
  if (in_use_ == nullptr) {
    sqlite3_finalize(stmt_);
    return;
  }
  sqlite3_reset(stmt_);  // ends a read that did not step to its end
  sqlite3_clear_bindings(stmt_);
  std::lock_guard lock(cache_mu);
  *in_use_ = false;
}

absl::Status Stmt::prepared() const {
  if (rc_ == SQLITE_OK) return absl::OkStatus();
  return absl::InternalError(fmt::format("sqlite prepare: {}", sqlite3_errmsg(db_)));
}

void Stmt::bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }

void Stmt::bind(int i, const std::string& v) {
  sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

void Stmt::bindBlob(int i, const std::string& v) {
  sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

int Stmt::step() { return sqlite3_step(stmt_); }

void Stmt::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

absl::Status Stmt::run() {
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

int64_t Stmt::i64(int col) { return sqlite3_column_int64(stmt_, col); }

std::string Stmt::text(int col) {
  const auto* p = sqlite3_column_blob(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p == nullptr ? std::string()
                      : std::string(static_cast<const char*>(p), static_cast<size_t>(n));
}

}  // namespace bulkhead::controller::sqlite
