// `bulkhead-controller backup`: a consistent copy of a running controller's database.
#pragma once

#include <cstdint>
#include <filesystem>

#include "absl/status/statusor.h"
#include "controller/store/sqlite_store.h"

namespace bulkhead::controller {

struct BackupSummary {
  uint64_t bytes = 0;            // size of the copy
  int schema_version = 0;        // of the copy
  int64_t audit_rows = 0;        // rows in the copy's audit trail
  int64_t evidence_bundles = 0;  // bundles the copy records (their files are not in it)
  int64_t desired_states = 0;    // desired states (one per host, one for the fleet-wide blocks)
};

// Copies the SQLite database at `database` to `to` with SQLite's online backup, in one step:
// the copy is the database as of one instant, taken while the controller keeps writing (WAL:
// the controller's writes are not blocked). The copy is written beside `to` first, checked
// (PRAGMA integrity_check), turned into a single file (no -wal), synced, and only then renamed
// to `to`, so `to` is never half a backup. Refuses (nothing written) when `database` does not
// exist, or `to` already exists. The evidence bundles' files (<data-dir>/evidence) are not in
// the copy: they never change once stored, so a plain copy of that directory goes with it.
absl::StatusOr<BackupSummary> backupDatabase(const std::filesystem::path& database,
                                             const std::filesystem::path& to);

// How much a restore raises every host's desired-state generation. Agents keep the newest
// generation they were sent and ignore older ones; after a backup the controller may have sent
// later ones, so the restored states must outrank them: 2^32 is more changes than a fleet
// makes between a backup and its restore.
inline constexpr uint64_t kRestoreGenerationStep = uint64_t{1} << 32;

struct RestoreSummary {
  BackupSummary copy;         // what the restored database holds
  int64_t states_raised = 0;  // desired states whose generation was raised
};

// Installs the backup `from` as the database `database` (as backupDatabase copies: checked,
// synced, renamed into place; refused when `database` exists), opens it with `options` (the
// audit key the backup's chain was written with) and raises every desired state's generation
// by kRestoreGenerationStep, writing `audit` (the restore's row) in the same transaction. On
// a failure after the copy, the copy is removed again: nothing half-restored is left.
absl::StatusOr<RestoreSummary> restoreDatabase(const std::filesystem::path& from,
                                               const std::filesystem::path& database,
                                               SqliteStoreOptions options, AuditEntry audit);

}  // namespace bulkhead::controller
