// ProcessActions on real processes of the test's own (a child it starts): host data that is
// not UTF-8 (an argv holding \xff) must come back as a valid result document.
#include "agent/daemon/process_actions.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

namespace bulkhead::agent {
namespace {

class NoSessions final : public SessionSource {
 public:
  std::string name() const override { return "none"; }
  absl::StatusOr<std::vector<SessionInfo>> sessions() override {
    return std::vector<SessionInfo>{};
  }
};

// A child `sleep 30` whose argv[0] is not UTF-8.
pid_t startNonUtf8Child() {
  pid_t pid = ::fork();
  if (pid == 0) {
    char arg0[] = "\xff\xfe-sleeper";
    char arg1[] = "30";
    char* argv[] = {arg0, arg1, nullptr};
    ::execv("/bin/sleep", argv);
    ::_exit(127);
  }
  return pid;
}

TEST(ProcessActions, KillOfAProcessWithANonUtf8ArgvGivesAValidDocument) {
  pid_t child = startNonUtf8Child();
  ASSERT_GT(child, 0);
  // Wait (bounded) until the exec is visible, so the scan sees the sleeper's argv.
  for (int i = 0; i < 500; ++i) {
    char buf[64] = {};
    FILE* f = std::fopen(fmt::format("/proc/{}/cmdline", child).c_str(), "r");
    size_t n = f != nullptr ? std::fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f != nullptr) std::fclose(f);
    if (n > 0 && static_cast<unsigned char>(buf[0]) == 0xff) break;
    ::usleep(2000);
  }
  NoSessions sessions;
  ProcessActionsOptions options;
  options.protection.self_pid = ::getpid();
  options.kill_wait = std::chrono::milliseconds(5000);
  ProcessActions actions(&sessions, nullptr, options);
  v1::Command c;
  c.set_id("cmd-1");
  c.mutable_kill_process()->set_pid(child);
  v1::CommandResult r = actions.run(c);
  int wstatus = 0;
  ::waitpid(child, &wstatus, 0);
  EXPECT_TRUE(r.ok()) << r.error();
  ASSERT_TRUE(nlohmann::json::accept(r.result_json())) << r.result_json();
  auto doc = nlohmann::json::parse(r.result_json());
  ASSERT_EQ(doc["killed"].size(), 1u) << r.result_json();
  EXPECT_EQ(doc["killed"][0]["pid"], child);
  EXPECT_EQ(doc["killed"][0]["cmdline"], "\xef\xbf\xbd\xef\xbf\xbd-sleeper 30");
  EXPECT_TRUE(WIFSIGNALED(wstatus));
}

}  // namespace
}  // namespace bulkhead::agent
