// The store's schema: an append-only list of migrations, the version in PRAGMA user_version.
// Internal to controller/store.
#pragma once

#include <sqlite3.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::controller::sqlite {

// The newest schema version this build knows.
int latestSchemaVersion();

// The database's schema version (PRAGMA user_version; 0 for a new file).
absl::StatusOr<int> schemaVersion(sqlite3* db);

// Applies every migration the database lacks, in one transaction. FailedPrecondition when the
// database was written by a newer version.
absl::Status migrate(sqlite3* db);

}  // namespace bulkhead::controller::sqlite
