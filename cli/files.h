// Files the CLI reads and writes whole: exports, reports and their signatures.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulkhead::cli {

// The file's bytes; NOT_FOUND naming the path and the cause when it cannot be read.
absl::StatusOr<std::string> readWholeFile(const std::string& path);

// Creates `path` (never replacing a file or following a symlink) holding `data`, synced.
// ALREADY_EXISTS when it cannot be created; DATA_LOSS (and no file left) when the write fails.
absl::Status writeNewFile(const std::string& path, std::string_view data);

}  // namespace bulkhead::cli
