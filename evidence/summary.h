// The first things a responder reads in a bundle (`bulkhead evidence show`): deleted or memfd
// executables, processes with connections to other hosts, listening sockets owned by
// unexpected processes, recent and failed logins, preload entries, kernel taint, collectors
// that failed. Format of the JSON document: evidence/README.md.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace bulkhead::evidence {

absl::StatusOr<nlohmann::json> summarize(const std::filesystem::path& bundle);

// Human-readable rendering of summarize()'s document (for the CLI), ending with a newline.
std::string renderSummary(const nlohmann::json& summary);

}  // namespace bulkhead::evidence
