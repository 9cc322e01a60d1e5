// The PostgreSQL store's schema: the tables of sql_tables.h in PostgreSQL's types, and their
// migrations, tracked in table schema_version. Internal to controller/store.
#pragma once

#include "absl/status/statusor.h"
#include "controller/store/sql_db.h"

namespace bulkhead::controller::postgres {

int latestSchemaVersion();
// 0 for a database the store never used.
absl::StatusOr<int> schemaVersion(sql::Db* db);
// Creates or migrates the schema in one write transaction (so the controllers starting on one
// database at once take turns). FailedPrecondition when the database was written by a newer
// version.
absl::Status migrate(sql::Db* db);

}  // namespace bulkhead::controller::postgres
