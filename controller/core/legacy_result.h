// The result document of an agent one version behind (CommandResult.result_json, a JSON
// object with the keys of the typed result) read into the typed result.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "bulkhead/v1/agent.pb.h"

namespace bulkhead::controller {

// Sets the result of `result` from `document`, the answer to host action `action`
// ("kill-connections", "sessions", "kill-sessions" or "kill-process"). An empty document sets
// nothing (the agent sent none: it failed before acting). A document that is not a JSON
// object, a key of the wrong type, an enum string outside the known set, or an unknown
// action: INVALID_ARGUMENT naming the key, and `result` has no typed result.
absl::Status convertLegacyResult(std::string_view action, std::string_view document,
                                 bulkhead::v1::CommandResult* result);

}  // namespace bulkhead::controller
