// Store on an embedded SQLite database: WAL journal, synchronous=FULL (a commit is on disk,
// WAL included, before it returns: an acknowledged containment or audit row survives a power
// loss), a busy timeout, and schema migrations from version 1 tracked in PRAGMA user_version.
// One connection guarded by the store's lock (SqlStore).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controller/store/sql_store.h"

namespace bulkhead::controller {

struct SqliteStoreOptions {
  // The audit chain's HMAC key (raw bytes, see audit_key.h). Empty: rows are appended without
  // a MAC and verification checks the hash chain only (tests, tools reading old files).
  std::string audit_key;
};

class SqliteStore final : public SqlStore {
 public:
  // Opens (creating if missing) the database at `path` and migrates it to the newest schema.
  // Fails if the file cannot be opened or written, or was written by a newer version. With an
  // audit key, a table whose last row has no MAC gets the "audit-keyed" marker row.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> create(const std::filesystem::path& path,
                                                             SqliteStoreOptions options = {});

  // The newest schema version this build knows.
  static int latestSchemaVersion();
  absl::StatusOr<int> schemaVersion();

  // Test hook: reads one PRAGMA's value.
  absl::StatusOr<int64_t> pragmaForTest(const std::string& name);

 private:
  using SqlStore::SqlStore;
  absl::Status rewriteSchemaVersion() override;
};

}  // namespace bulkhead::controller
