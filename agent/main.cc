// bulkhead-agent: see agent/daemon/agent.h.
#include <string>
#include <vector>

#include "agent/daemon/agent.h"
#include "common/runtime.h"

int main(int argc, char** argv) {
  bulkhead::tuneProcessRuntime();
  return bulkhead::agent::agentMain(std::vector<std::string>(argv + 1, argv + argc));
}
