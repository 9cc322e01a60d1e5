// The store's schema: an append-only list of migrations, the version in PRAGMA user_version.
// Internal to controller/store.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/store/sql_db.h"

namespace bulkhead::controller::sqlite {

// The newest schema version this build knows.
int latestSchemaVersion();

// The database's schema version (PRAGMA user_version; 0 for a new file).
absl::StatusOr<int> schemaVersion(sql::Db* db);

// Applies every migration the SQLite database `db` lacks, in one transaction. FailedPrecondition
// when the database was written by a newer version.
absl::Status migrate(sql::Db* db);

}  // namespace bulkhead::controller::sqlite
