// The SQLite plumbing the store's tables share: the connection, statements, transactions.
// Internal to controller/store (it includes <sqlite3.h>; headers outside this folder must not
// include it). Nothing here locks: REQUIRES the store's lock held while a connection, a
// statement or a transaction is in use.
#pragma once

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::controller::sqlite {

// Runs `sql` (one or more statements; result rows are dropped).
absl::Status exec(sqlite3* db, const char* sql);

// Internal "<what>: <the connection's last error>".
absl::Status error(sqlite3* db, std::string_view what);

// Finalizes the connection's cached statements (Stmt), then closes it.
struct Close {
  void operator()(sqlite3* db) const;
};
using Connection = std::unique_ptr<sqlite3, Close>;

// Opens (creating if missing) the database at `path`: WAL journal, synchronous=FULL, foreign
// keys, a 5 s busy timeout. PermissionDenied "cannot open database ..." / "cannot use database
// ..." when the file cannot be opened or written, or WAL is unavailable.
absl::StatusOr<Connection> open(const std::filesystem::path& path);

// A prepared statement. Statements are cached per connection by their SQL text (up to
// kMaxCachedStatements each; Close finalizes them): a Stmt whose SQL ran before on the same
// connection reuses its compiled program instead of parsing it again, and on scope exit it is
// reset with its bindings cleared (a cached statement in use by another Stmt is not shared:
// that one prepares its own, finalized on scope exit).
inline constexpr size_t kMaxCachedStatements = 128;
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql);
  Stmt(sqlite3* db, const std::string& sql) : Stmt(db, sql.c_str()) {}
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Whether preparing succeeded; check before binding or stepping.
  absl::Status prepared() const;
  void bind(int i, int64_t v);
  void bind(int i, const std::string& v);
  void bindBlob(int i, const std::string& v);
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step();
  // Steps once (a write), then resets the statement and its bindings for the next run.
  absl::Status run();
  // Ready to run again, with no bindings.
  void reset();
  int64_t i64(int col);
  std::string text(int col);  // also reads blobs
 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  bool* in_use_ = nullptr;  // the cache entry's flag when stmt_ is cached
};

}  // namespace bulkhead::controller::sqlite
