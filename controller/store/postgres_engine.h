// The PostgreSQL engine of the store's tables (sql_db.h), on libpqxx: one connection,
// reconnected at the next statement after it is lost. Statements outside a transaction
// autocommit; a write transaction holds the store-wide advisory lock (kWriteLock) to its commit,
// so the writers of every controller sharing the database take turns, as SQLite's one writer
// does, and a chain's head read inside it stays the head until the commit. Internal to
// controller/store (it includes <pqxx/pqxx>).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/store/sql_db.h"

namespace bulkhead::controller::postgres {

// The advisory lock key every write transaction holds (pg_advisory_xact_lock): "bulk" in ASCII.
inline constexpr int64_t kWriteLock = 0x62756c6b;

// Connects to `url` (a libpq connection URI or keyword/value string). Unavailable "cannot
// connect to PostgreSQL ..." when it cannot.
absl::StatusOr<std::unique_ptr<sql::Db>> connect(const std::string& url);

// A server's or libpq's message without its trailing newline.
std::string trimmed(std::string text);

// "?N" placeholders outside quoted text and identifiers rewritten as "$N"; `max_parameter` set
// to the highest N.
std::string dollarParameters(const std::string& sql, int* max_parameter);

}  // namespace bulkhead::controller::postgres
