// The controller's data directory (database, WAL, evidence bundles): private to the
// controller's user. The controller also runs with umask 077 so that every file it creates
// later (SQLite's -wal and -shm files included) is private from the start.
#pragma once

#include <filesystem>

#include "absl/status/status.h"

namespace bulkhead::controller {

// Creates `dir` (mode 0700) if missing, checks it is a readable and writable directory, and
// takes group and other permissions away from it and from everything below it: directories
// end 0700 (or narrower), files 0600 (or narrower). Symlinks are neither followed nor changed.
// Errors name --data-dir and the path at fault.
absl::Status prepareDataDir(const std::filesystem::path& dir);

}  // namespace bulkhead::controller
