// The session sources: LogindSessionSource with a fake loginctl (the machine and the lab have
// no system bus), ProcSessionSource over a fake /proc.
#include <map>

#include <gtest/gtest.h>

#include "agent/linux/proc_scan.h"
#include "fake_processes.h"

namespace bulkhead::agent {
namespace {

class FakeLoginctl final : public LoginctlRunner {
 public:
  std::map<std::string, absl::StatusOr<std::string>> answers;   // by first two args
  std::vector<std::vector<std::string>> calls;
  absl::StatusOr<std::string> run(const std::vector<std::string>& args) override {
    calls.push_back(args);
    std::string key = args.size() >= 2 ? args[0] + " " + args[1] : args[0];
    auto it = answers.find(key);
    if (it == answers.end()) return absl::UnavailableError("no such session");
    return it->second;
  }
};

class FakeProcSource final : public SessionSource {
 public:
  std::vector<SessionInfo> list;
  std::string name() const override { return "proc"; }
  absl::StatusOr<std::vector<SessionInfo>> sessions() override { return list; }
};

TEST(LogindSessionSource, AsksLogindAndTakesPidsFromProc) {
  FakeLoginctl bus;
  bus.answers["list-sessions --no-legend"] = std::string("  7 1001 mallory\n  8 1002 alice\n");
  bus.answers["show-session 7"] =
      std::string("Id=7\nUser=1001\nName=mallory\nTTY=\nRemoteHost=10.77.0.66\nService=sshd\nLeader=40\n");
  // session 8 ended between the list and the show: skipped
  FakeProcSource proc;
  proc.list.resize(1);
  proc.list[0].id = 7;
  proc.list[0].pids = {40, 41, 42};
  LogindSessionSource src(&bus, &proc);
  auto s = src.sessions();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(src.name(), "logind");
  ASSERT_EQ(s->size(), 1u);
  EXPECT_EQ((*s)[0].user, "mallory");
  EXPECT_EQ((*s)[0].remote, "10.77.0.66");
  EXPECT_EQ((*s)[0].pids, (std::vector<int>{40, 41, 42}));
  EXPECT_EQ(bus.calls.size(), 3u);
}

TEST(LogindSessionSource, FallsBackToProcWithoutABus) {
  FakeLoginctl bus;
  bus.answers["list-sessions --no-legend"] =
      absl::UnavailableError("Failed to connect to bus: No such file or directory");
  FakeProcSource proc;
  proc.list.resize(2);
  proc.list[0].id = 1;
  proc.list[1].id = 2;
  LogindSessionSource src(&bus, &proc);
  auto s = src.sessions();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(src.name(), "proc");
  EXPECT_EQ(s->size(), 2u);
}

TEST(ProcSessionSource, GroupsTheProcessesItsProcFsReadsByAuditSession) {
  FakeHost host;
  host.add(100, 1, 5, "bash");
  host.add(101, 100, 5, "vim");
  host.add(200, 1, 7, "sshd");
  host.add(300, 1, kNoAuditId, "cron");   // no audit session: not a login session
  FakeProcFs procfs(&host);
  ProcSessionSource src(&procfs);
  auto s = src.sessions();
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].id, 5u);
  EXPECT_EQ((*s)[0].pids, (std::vector<int>{100, 101}));
  EXPECT_EQ((*s)[0].leader_pid, 100);
  EXPECT_EQ((*s)[1].id, 7u);
  EXPECT_EQ((*s)[1].service, "sshd");
  // One scan with sockets (for the remote address) and the TCP table: nothing else is read.
  EXPECT_EQ(host.events, (std::vector<std::string>{"scan+sockets", "record tcp"}));
}

TEST(ExecLoginctlRunner, ReportsFailureAsAnError) {
  ExecLoginctlRunner r;
  auto out = r.run({"--bhtest-no-such-option"});   // loginctl exits 1; or it is not installed
  EXPECT_FALSE(out.ok());
}

}  // namespace
}  // namespace bulkhead::agent
