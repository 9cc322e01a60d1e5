// bulkhead-agent: see agent/daemon/agent.h.
#include <string>
#include <vector>

#include "agent/daemon/agent.h"

int main(int argc, char** argv) {
  return bulkhead::agent::agentMain(std::vector<std::string>(argv + 1, argv + argc));
}
