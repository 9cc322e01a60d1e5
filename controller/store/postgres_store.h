// Store on a PostgreSQL database (`--store postgresql://...`): the same tables and contract as
// SqliteStore, for several controllers sharing one database. Durability is PostgreSQL's
// (synchronous_commit: a commit is on the server's disk before it returns). Writes take turns
// across every controller on the database (postgres_engine.h), so each chain (audit, custody)
// stays one chain whichever controller appends. A lost connection is opened again at the next
// write transaction or read (nothing was done yet); a call cut off midway answers an error
// (its transaction rolled back, or Unavailable when the commit's outcome is unknown).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controller/store/sql_store.h"
#include "controller/store/sqlite_store.h"

namespace bulkhead::controller {

class PostgresStore final : public SqlStore {
 public:
  // Connects to `url` (postgresql://USER@HOST/DB?..., or libpq's keyword=value form) and
  // creates or migrates the schema. Unavailable when the server cannot be reached;
  // FailedPrecondition when a newer controller wrote the schema, or when the audit key (which
  // every controller on the database must share) did not write the chain's last row. With an
  // audit key, a table whose last row has no MAC gets the "audit-keyed" marker row.
  static absl::StatusOr<std::unique_ptr<PostgresStore>> create(const std::string& url,
                                                               SqliteStoreOptions options = {});

  static int latestSchemaVersion();
  absl::StatusOr<int> schemaVersion();

 private:
  using SqlStore::SqlStore;
  absl::Status rewriteSchemaVersion() override;
};

// `url` with its password, if any, replaced by "***": what logs and errors may show.
std::string redactedUrl(const std::string& url);

}  // namespace bulkhead::controller
