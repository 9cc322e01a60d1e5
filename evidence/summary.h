// The first things a responder reads in a bundle (`bulkhead evidence show`): deleted or memfd
// executables, processes with connections to other hosts, listening sockets owned by
// unexpected processes, recent and failed logins, preload entries, kernel taint, collectors
// that failed. Format of the JSON document: evidence/README.md.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"

namespace bulkhead::evidence {

absl::StatusOr<nlohmann::json> summarize(const std::filesystem::path& bundle);

// Pure: the same from the bundle's members already read (path relative to the top directory,
// e.g. "artifacts/processes.jsonl", -> content). Every member is untrusted and may be missing.
// Each field of the document has one type whatever the members hold (evidence/README.md): a
// text field is a string or null, an integer field an int64 or null, a count an unsigned
// integer; a field of another type in a member reads as null. Never throws.
nlohmann::json summarizeMembers(const std::map<std::string, std::string>& members);

// Human-readable rendering of summarize()'s document (for the CLI), ending with a newline.
std::string renderSummary(const nlohmann::json& summary);

}  // namespace bulkhead::evidence
