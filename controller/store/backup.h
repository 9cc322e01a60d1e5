// `bulkhead-controller backup`: a consistent copy of a running controller's database.
#pragma once

#include <cstdint>
#include <filesystem>

#include "absl/status/statusor.h"

namespace bulkhead::controller {

struct BackupSummary {
  uint64_t bytes = 0;            // size of the copy
  int schema_version = 0;        // of the copy
  int64_t audit_rows = 0;        // rows in the copy's audit trail
  int64_t evidence_bundles = 0;  // bundles the copy records (their files are not in it)
  int64_t hosts = 0;             // hosts with a desired state
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

}  // namespace bulkhead::controller
