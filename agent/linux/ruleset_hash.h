// SHA-256 of the ruleset text read back from the kernel. The agent reports this hash with the
// generation it enforced; the reconciler compares it after a tamper event.
#pragma once

#include <string>

namespace bulkhead::agent {

// Lower-case hex SHA-256 (64 characters) of `text`. Pure; thread-safe.
std::string rulesetHash(const std::string& text);

}  // namespace bulkhead::agent
