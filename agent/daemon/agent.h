// bulkhead-agent's entry point: parses the command line and runs the selected mode.
#pragma once

#include <string>
#include <vector>

namespace bulkhead::agent {

// Exit status: 0 done, 1 runtime failure (status: agent not running; restore: not enforced),
// 2 bad usage or input (flags, identity, state dir).
int agentMain(const std::vector<std::string>& args);

}  // namespace bulkhead::agent
