// sessions / kill-sessions / kill-process: usage errors are caught before any controller is
// contacted (exit 2, one line naming the flag), and a refused agent answer is exit 2.
#include <gtest/gtest.h>

#include <sstream>

#include "cli/cli.h"
#include "tests/unit/cli/cli_run.h"

namespace bulkhead::cli {
namespace {

using clitest::CliRun;

CliRun run(std::vector<std::string> args) { return clitest::runOffline(std::move(args)); }
int lines(const std::string& s) { return clitest::lineCount(s); }

TEST(SessionCommands, Registered) {
  for (const char* name : {"sessions", "kill-sessions", "kill-process"}) {
    EXPECT_TRUE(commands().count(name)) << name;
  }
}

TEST(SessionCommands, KillSessionsUsageErrors) {
  struct Case {
    std::vector<std::string> args;
    std::string words;
  };
  for (const auto& c : std::vector<Case>{
           {{"kill-sessions", "h1", "--reason", "x"}, "exactly one of"},
           {{"kill-sessions", "h1", "--user", "u", "--all", "--reason", "x"}, "exactly one of"},
           {{"kill-sessions", "h1", "--from", "10.0.0.300", "--reason", "x"}, "--from"},
           {{"kill-sessions", "h1", "--from", "10.0.0.1/8", "--reason", "x"}, "--from"},
           {{"kill-sessions", "h1", "--session", "0", "--reason", "x"}, "--session"},
           {{"kill-sessions", "h1", "--session", "abc", "--reason", "x"}, "session"},
           {{"kill-sessions", "h1", "--all"}, "reason"},
           {{"kill-sessions", "--all", "--reason", "x"}, "host"},
           {{"kill-sessions", "h1", "--all", "--capture-limit", "5s", "--reason", "x"},
            "--capture-limit: only with --capture-first"},
           {{"kill-sessions", "h1", "--all", "--capture-first", "--capture-limit", "soon",
             "--reason", "x"},
            "--capture-limit"},
           {{"kill-sessions", "h1", "--all", "--capture-first", "--capture-limit", "11m",
             "--reason", "x"},
            "more than 10m"},
       }) {
    CliRun r = run(c.args);
    EXPECT_EQ(r.code, kUsage) << c.args[2];
    EXPECT_NE(r.err.find(c.words), std::string::npos) << r.err;
    EXPECT_EQ(lines(r.err), 1) << r.err;
  }
}

TEST(SessionCommands, KillProcessUsageErrors) {
  struct Case {
    std::vector<std::string> args;
    std::string words;
  };
  for (const auto& c : std::vector<Case>{
           {{"kill-process", "h1", "--reason", "x"}, "exactly one of"},
           {{"kill-process", "h1", "--pid", "5", "--exe", "/bin/x", "--reason", "x"},
            "exactly one of"},
           {{"kill-process", "h1", "--pid", "0", "--reason", "x"}, "--pid"},
           {{"kill-process", "h1", "--pid", "-3", "--reason", "x"}, "--pid"},
           {{"kill-process", "h1", "--exe", "sleep", "--reason", "x"}, "--exe"},
           {{"kill-process", "h1", "--pid", "5"}, "reason"},
           {{"kill-process", "h1", "--pid", "5", "--capture-limit", "1s", "--reason", "x"},
            "only with --capture-first"},
       }) {
    CliRun r = run(c.args);
    EXPECT_EQ(r.code, kUsage) << c.args[2];
    EXPECT_NE(r.err.find(c.words), std::string::npos) << r.err;
    EXPECT_EQ(lines(r.err), 1) << r.err;
  }
}

TEST(SessionCommands, HelpExitsZero) {
  for (const char* name : {"sessions", "kill-sessions", "kill-process"}) {
    CliRun r = run({name, "--help"});
    EXPECT_EQ(r.code, kOk) << name;
    EXPECT_NE(r.out.find(name == std::string("sessions") ? "--host" : "--reason"), std::string::npos)
        << r.out;
  }
}

}  // namespace
}  // namespace bulkhead::cli
