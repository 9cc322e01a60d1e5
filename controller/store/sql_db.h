// What the store's tables need of a SQL database, whichever engine holds it: statements with
// numbered parameters (?1, ?2, ...), rows read by column, write transactions. The tables
// (sql_tables.h) are written once against this; sqlite_engine.h and postgres_engine.h are the
// two engines. Internal to controller/store. Nothing here locks: REQUIRES the store's lock held
// while a database, a statement or a transaction is in use.
//
// The SQL the tables write is the common part of SQLite's and PostgreSQL's dialects: ?N
// parameters (PostgreSQL's engine rewrites them to $N), a subquery in FROM always has an
// alias, INSERT ... ON CONFLICT, RETURNING, and a `rowid` column where a table is read in
// insertion order (SQLite's implicit one; a BIGSERIAL column of that name in PostgreSQL).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::controller::sql {

// What Stmt::step() answers: a row to read, the end of the rows, or (any other value) an
// error, whose text Db::lastError() holds.
inline constexpr int kRow = 100;   // SQLite's SQLITE_ROW
inline constexpr int kDone = 101;  // SQLite's SQLITE_DONE

// One statement of an engine (Stmt is its handle). Parameters are 1-based, columns 0-based.
class Cursor {
 public:
  virtual ~Cursor() = default;
  virtual absl::Status prepared() const = 0;
  virtual void bind(int i, int64_t v) = 0;
  virtual void bind(int i, const std::string& v) = 0;
  virtual void bindBlob(int i, const std::string& v) = 0;
  virtual int step() = 0;
  // Ready to run again, with no bindings.
  virtual void reset() = 0;
  virtual int64_t i64(int col) = 0;
  virtual std::string text(int col) = 0;  // also reads blobs
};

class Db {
 public:
  virtual ~Db() = default;
  // Errors show when the returned cursor is asked prepared().
  virtual std::unique_ptr<Cursor> prepare(const std::string& sql) = 0;
  // Runs `sql` (one or more statements, no parameters; result rows are dropped).
  virtual absl::Status exec(const std::string& sql) = 0;
  // A write transaction: at most one writer at a time on the database, across every process
  // using it (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock held to the commit), so a
  // chain's head read inside it stays the head until it commits.
  virtual absl::Status begin() = 0;
  virtual absl::Status commit() = 0;
  virtual void rollback() = 0;
  // Rows the last INSERT, UPDATE or DELETE changed.
  virtual int64_t changes() = 0;
  // Inside a write transaction: sends `payload` on `channel` to every listener on the database
  // when the transaction commits, not before and not if it rolls back (PostgreSQL's NOTIFY). An
  // engine without listeners (SQLite: one process) does nothing.
  virtual absl::Status notify(const std::string& /*channel*/, const std::string& /*payload*/) {
    return absl::OkStatus();
  }
  // The engine's words for the last error.
  virtual std::string lastError() = 0;
};

// Internal "<what>: <the database's last error>".
absl::Status error(Db* db, std::string_view what);

// A statement on `db`: prepared (or taken from the engine's cache) when made, finished when
// it leaves scope.
class Stmt {
 public:
  Stmt(Db* db, const std::string& sql) : db_(db), cursor_(db->prepare(sql)) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Whether preparing succeeded; check before binding or stepping.
  absl::Status prepared() const { return cursor_->prepared(); }
  void bind(int i, int64_t v) { cursor_->bind(i, v); }
  void bind(int i, const std::string& v) { cursor_->bind(i, v); }
  void bindBlob(int i, const std::string& v) { cursor_->bindBlob(i, v); }
  // A list of strings, stored as a JSON array (text).
  void bindStrings(int i, const std::vector<std::string>& v);
  // kRow, kDone or an error.
  int step() { return cursor_->step(); }
  // Ready to run again, with no bindings.
  void reset() { cursor_->reset(); }
  // Steps once (a write), then resets the statement and its bindings for the next run.
  absl::Status run();
  int64_t i64(int col) { return cursor_->i64(col); }
  std::string text(int col) { return cursor_->text(col); }
  // A list bound with bindStrings(); elements that are not strings, or text that does not
  // parse, are left out.
  std::vector<std::string> strings(int col);

  // Steps through every result row, `read(*this)` for each. `what` names the query in errors.
  template <typename Read>
  auto collect(Read read, std::string_view what)
      -> absl::StatusOr<std::vector<std::invoke_result_t<Read, Stmt&>>> {
    std::vector<std::invoke_result_t<Read, Stmt&>> out;
    int rc;
    while ((rc = step()) == kRow) out.push_back(read(*this));
    if (rc != kDone) return error(db_, what);
    return out;
  }

 private:
  Db* db_;
  std::unique_ptr<Cursor> cursor_;
};

// One write transaction (Db::begin). Rolled back when it leaves scope uncommitted, so no
// return path leaves it open or half-applied.
class Transaction {
 public:
  static absl::StatusOr<Transaction> begin(Db* db);
  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  // Commits; on failure the transaction is rolled back when it leaves scope.
  absl::Status commit();

 private:
  explicit Transaction(Db* db) : db_(db) {}
  Db* db_;
};

// Runs `body` (returning absl::Status or absl::StatusOr<T>) in one transaction, committed when
// it returns OK and rolled back otherwise. Returns what `body` returned, or the failure to
// begin or commit.
template <typename Body>
auto inTransaction(Db* db, Body&& body) -> std::invoke_result_t<Body> {
  auto tx = Transaction::begin(db);
  if (!tx.ok()) return tx.status();
  auto result = std::forward<Body>(body)();
  if (!result.ok()) return result;
  if (auto s = tx->commit(); !s.ok()) return s;
  return result;
}

// Brings a database's schema to the newest of `steps` (step N, 1-based, moves version N-1 to N),
// in one write transaction: `version` reads the database's version, `set_version` is the SQL
// that records the newest. FailedPrecondition when the database was written by a newer version.
absl::Status migrate(Db* db, const std::vector<const char*>& steps,
                     const std::function<absl::StatusOr<int>()>& version,
                     const std::function<std::string(int)>& set_version);

// Whether `sql`, its one parameter ?1 bound to `key`, returns a row.
absl::StatusOr<bool> exists(Db* db, const std::string& sql, const std::string& key);

// Labels as a column stores them: a JSON object of strings; and back, DataLoss naming `table`
// when the stored text is not one.
std::string labelsJson(const std::map<std::string, std::string>& labels);
absl::StatusOr<std::map<std::string, std::string>> readLabelsJson(const std::string& text,
                                                                  std::string_view table);

}  // namespace bulkhead::controller::sql
