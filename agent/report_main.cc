// bulkhead-report: the reporting subcommands of bulkhead-agent (`signal`,
// `wazuh-active-response`, `sshguard-backend`; agent/daemon/report_commands.h) as a small
// process, for detection tools that start one process per report (fail2ban's action, Wazuh's
// active response): linked --as-needed, it loads a fraction of the daemon's shared libraries.
#include <cstdio>
#include <string>
#include <vector>

#include "agent/core/signal_args.h"
#include "agent/daemon/report_commands.h"
#include "common/version.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 1 && args.front() == "--version") {
    std::printf("%s\n", bulkhead::versionLine("bulkhead-report").c_str());
    return 0;
  }
  if (args.size() == 1 && args.front() == "--help") {
    std::printf("usage:\n%s", bulkhead::agent::reportUsage().c_str());
    return 0;
  }
  if (args.empty() || !bulkhead::agent::isReportSubcommand(args.front())) {
    std::fprintf(stderr, "usage:\n%s", bulkhead::agent::reportUsage().c_str());
    return 2;
  }
  return bulkhead::agent::reportMain(args);
}
