// Runs the CLI in-process for tests: exit code, stdout and stderr.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.h"

namespace bulkhead::cli::clitest {

struct CliRun {
  int code;
  std::string out;
  std::string err;
};

// Runs `args` as given (commands that need no controller, such as `pki`).
inline CliRun run(const std::vector<std::string>& args) {
  std::ostringstream out;
  std::ostringstream err;
  Io io{out, err};
  int code = runCli(args, io);
  return {code, out.str(), err.str()};
}

// Runs `args` against an unroutable controller with a missing identity: a test that got as
// far as dialling fails with an --identity error instead of the usage errors it checks.
inline CliRun runOffline(std::vector<std::string> args) {
  std::ostringstream out;
  std::ostringstream err;
  Io io{out, err};
  args.insert(args.begin(), {"--controller", "192.0.2.1:7443", "--identity", "/nonexistent"});
  int code = runCli(args, io);
  return {code, out.str(), err.str()};
}

inline int lineCount(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace bulkhead::cli::clitest
