// ProcessActions over fakes of /proc, the signaller and the flow killer (the order of stop,
// re-scan, record, cut and kill), and on a real process of the test's own (a child it starts):
// host data that is not UTF-8 (an argv holding \xff) must come back as valid UTF-8.
#include "agent/daemon/process_actions.h"
#include "agent/linux/process_killer.h"
#include "fake_processes.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

namespace bulkhead::agent {
namespace {

class NoSessions final : public SessionSource {
 public:
  std::string name() const override { return "none"; }
  absl::StatusOr<std::vector<SessionInfo>> sessions() override {
    return std::vector<SessionInfo>{};
  }
};

using ::testing::ElementsAre;

class FixedSessions final : public SessionSource {
 public:
  explicit FixedSessions(std::vector<SessionInfo> sessions) : sessions_(std::move(sessions)) {}
  std::string name() const override { return "fixed"; }
  absl::StatusOr<std::vector<SessionInfo>> sessions() override { return sessions_; }

 private:
  std::vector<SessionInfo> sessions_;
};

Flow flowOwnedBy(uint32_t pid) {
  Flow f;
  f.family = AF_INET;
  f.local_port = 22;
  f.remote_port = static_cast<uint16_t>(40000 + pid);
  f.owner_pid = pid;
  return f;
}

ProcessActionsOptions fakeOptions() {
  ProcessActionsOptions o;
  o.protection.self_pid = 99999;
  o.kill_wait = std::chrono::milliseconds(100);
  return o;
}

// Session 5: bash (100) and its child (101); a fork in flight (102, under 101) shows up only
// once the first processes are stopped. Session 7 (200) is someone else's.
class ProcessActionsOrder : public ::testing::Test {
 protected:
  ProcessActionsOrder() {
    host_.add(1, 0, kNoAuditId, "init");
    host_.add(100, 1, 5, "bash");
    host_.add(101, 100, 5, "worker");
    host_.add(200, 1, 7, "other");
    host_.on_first_stop = [](FakeHost& h) { h.add(102, 101, 5, "forked"); };
  }

  // Runs `c` with a flow killer over `flows` and the sessions `sessions` (and `capture` as the
  // capture-first engine).
  v1::CommandResult run(const v1::Command& c, std::vector<Flow> flows,
                        std::vector<SessionInfo> sessions = {}, StoppedCapture* capture = nullptr) {
    RecordingFlowKiller killer(&host_, std::move(flows));
    FixedSessions source(std::move(sessions));
    ProcessActions actions(&source, &killer, &procfs_, &signaller_, fakeOptions());
    actions.setStoppedCapture(capture);
    return actions.run(c);
  }

  FakeHost host_;
  FakeProcFs procfs_{&host_};
  FakeSignaller signaller_{&host_};
};

TEST_F(ProcessActionsOrder, KillSessionsWithFreezeStopsRescansRecordsCutsThenKills) {
  SessionInfo s5;
  s5.id = 5;
  s5.user = "alice";
  s5.pids = {100, 101};
  v1::Command c;
  c.set_id("cmd-1");
  c.mutable_kill_sessions()->set_session_id(5);
  c.mutable_kill_sessions()->set_freeze(true);

  v1::CommandResult r = run(c, {flowOwnedBy(100), flowOwnedBy(200), flowOwnedBy(102)}, {s5});

  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_THAT(host_.events,
              ElementsAre("scan+sockets", "stop 100", "stop 101",             // first batch
                          "scan+sockets", "stop 100", "stop 101", "stop 102",  // the late fork
                          "scan+sockets",                                     // nothing new
                          "record tcp", "record 100", "record 101", "record 102",
                          "cut", "cut flow of 100", "cut flow of 102",
                          "kill 100", "kill 101", "kill 102"));
  ASSERT_TRUE(r.has_kill_processes());
  const v1::KillProcessesResult& k = r.kill_processes();
  EXPECT_EQ(k.scan_rounds(), 2u);  // the third scan found nothing new
  EXPECT_EQ(k.connections_cut(), 2u);
  EXPECT_TRUE(k.frozen());
  EXPECT_EQ(k.freeze_method(), v1::FREEZE_METHOD_SIGSTOP);
  EXPECT_EQ(k.records_size(), 3);
  EXPECT_EQ(k.killed_size(), 3);
  ASSERT_EQ(k.sessions_size(), 1);
  EXPECT_EQ(k.sessions(0).id(), 5u);
  EXPECT_EQ(k.sessions(0).user(), "alice");
  EXPECT_EQ(k.sessions(0).processes(), 2u);
  EXPECT_TRUE(host_.procs.count(200));
}

// Logs "collect" (with the pids and which of them are stopped at that moment) and "upload" to
// the host's events; answers with `collected` and `uploaded`.
class FakeStoppedCapture final : public StoppedCapture {
 public:
  explicit FakeStoppedCapture(FakeHost* host) : host_(host) {}
  absl::Status collect(const v1::Command& command, const v1::CaptureState& state,
                       const std::vector<int>& pids, std::chrono::milliseconds max) override {
    std::vector<std::string> seen;
    seen.reserve(pids.size());
    for (int pid : pids) {
      seen.push_back(fmt::format("{}{}", pid, host_->stopped.count(pid) ? "(T)" : "(running)"));
    }
    host_->events.push_back(
        fmt::format("collect {} [{}]", state.capture_id(), fmt::join(seen, " ")));
    command_id = command.id();
    limit = max;
    return collected;
  }
  absl::StatusOr<v1::CaptureResult> upload(const v1::Command&,
                                           const v1::CaptureState& state) override {
    host_->events.push_back(fmt::format("upload {}", state.capture_id()));
    return uploaded;
  }

  absl::Status collected = absl::OkStatus();
  absl::StatusOr<v1::CaptureResult> uploaded;
  std::string command_id;
  std::chrono::milliseconds limit{0};

 private:
  FakeHost* host_;
};

v1::CaptureResult storedAs(const std::string& evidence_id) {
  v1::CaptureResult r;
  r.set_capture_id("cap-1");
  r.set_evidence_id(evidence_id);
  return r;
}

v1::Command captureFirstSessionKill() {
  v1::Command c;
  c.set_id("kill-cap-1");
  c.mutable_kill_sessions()->set_session_id(5);
  c.mutable_kill_sessions()->set_capture_first(true);
  c.mutable_kill_sessions()->mutable_capture()->set_capture_id("cap-1");
  return c;
}

SessionInfo session5() {
  SessionInfo s5;
  s5.id = 5;
  s5.user = "alice";
  s5.pids = {100, 101};
  return s5;
}

TEST_F(ProcessActionsOrder, CaptureFirstStopsEverythingCapturesWhileStoppedKillsThenUploads) {
  FakeStoppedCapture capture(&host_);
  capture.uploaded = storedAs("ab12");

  v1::CommandResult r = run(captureFirstSessionKill(), {flowOwnedBy(100)}, {session5()}, &capture);

  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_THAT(host_.events,
              ElementsAre("scan+sockets", "stop 100", "stop 101",              //
                          "scan+sockets", "stop 100", "stop 101", "stop 102",  // the late fork
                          "scan+sockets",                                      //
                          "record tcp", "record 100", "record 101", "record 102",
                          "collect cap-1 [100(T) 101(T) 102(T)]",  // every victim held
                          "cut", "cut flow of 100",                // sockets seen, then cut
                          "kill 100", "kill 101", "kill 102",      //
                          "upload cap-1"));                        // after the kill
  EXPECT_EQ(capture.command_id, "kill-cap-1");
  EXPECT_EQ(capture.limit, std::chrono::milliseconds(60000));  // the default
  const v1::KillProcessesResult& k = r.kill_processes();
  EXPECT_EQ(k.capture_id(), "cap-1");
  ASSERT_TRUE(k.has_capture());
  EXPECT_EQ(k.capture().evidence_id(), "ab12");
  EXPECT_EQ(k.capture_error(), "");
  EXPECT_TRUE(k.frozen());  // capture-first implies the records too
  EXPECT_EQ(k.records_size(), 3);
  EXPECT_EQ(k.killed_size(), 3);
}

TEST_F(ProcessActionsOrder, AFailedCaptureStillKillsAndSaysWhy) {
  FakeStoppedCapture capture(&host_);
  capture.collected = absl::DeadlineExceededError("capture cap-1 not finished within 5 ms");
  v1::Command c = captureFirstSessionKill();
  c.mutable_kill_sessions()->set_capture_limit_ms(5);

  v1::CommandResult r = run(c, {}, {session5()}, &capture);

  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.refused());
  EXPECT_THAT(r.error(), ::testing::HasSubstr("no evidence stored (capture cap-1 not finished "
                                              "within 5 ms); the processes were killed"));
  EXPECT_EQ(capture.limit, std::chrono::milliseconds(5));
  EXPECT_THAT(host_.events, ::testing::IsSupersetOf({"kill 100", "kill 101", "kill 102"}));
  EXPECT_THAT(host_.events, ::testing::Not(::testing::Contains("upload cap-1")));
  const v1::KillProcessesResult& k = r.kill_processes();
  EXPECT_EQ(k.killed_size(), 3);
  EXPECT_EQ(k.capture_id(), "cap-1");
  EXPECT_FALSE(k.has_capture());
  EXPECT_EQ(k.capture_error(), "capture cap-1 not finished within 5 ms");
  EXPECT_TRUE(host_.procs.count(200));
}

TEST_F(ProcessActionsOrder, AFailedUploadAfterTheKillIsReported) {
  FakeStoppedCapture capture(&host_);
  capture.uploaded = absl::UnavailableError("evidence kept on the host at /spool/cap-1.tar.gz");

  v1::CommandResult r = run(captureFirstSessionKill(), {}, {session5()}, &capture);

  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.kill_processes().killed_size(), 3);
  EXPECT_EQ(r.kill_processes().capture_error(), "evidence kept on the host at /spool/cap-1.tar.gz");
  EXPECT_EQ(host_.events.back(), "upload cap-1");
}

TEST_F(ProcessActionsOrder, WithoutACaptureEngineTheKillStillHappens) {
  v1::CommandResult r = run(captureFirstSessionKill(), {}, {session5()}, nullptr);

  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.kill_processes().killed_size(), 3);
  EXPECT_EQ(r.kill_processes().capture_error(), "this agent has no capture engine");
}

TEST_F(ProcessActionsOrder, CaptureFirstKillProcessTreeCapturesTheStoppedTree) {
  FakeStoppedCapture capture(&host_);
  capture.uploaded = storedAs("cd34");
  v1::Command c;
  c.set_id("kill-cap-2");
  c.mutable_kill_process()->set_pid(101);
  c.mutable_kill_process()->set_tree(true);
  c.mutable_kill_process()->set_capture_first(true);
  c.mutable_kill_process()->set_capture_limit_ms(999999999);  // cut to the agent's maximum
  c.mutable_kill_process()->mutable_capture()->set_capture_id("cap-2");

  v1::CommandResult r = run(c, {}, {}, &capture);

  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_THAT(host_.events, ::testing::Contains("collect cap-2 [101(T) 102(T)]"));
  EXPECT_EQ(capture.limit, std::chrono::milliseconds(600000));
  EXPECT_EQ(r.kill_processes().capture().evidence_id(), "cd34");
  EXPECT_TRUE(host_.procs.count(100));
}

TEST_F(ProcessActionsOrder, ARefusedCaptureFirstKillCapturesNothing) {
  FakeStoppedCapture capture(&host_);
  v1::Command c;
  c.mutable_kill_process()->set_pid(1);  // protected only
  c.mutable_kill_process()->set_capture_first(true);
  c.mutable_kill_process()->mutable_capture()->set_capture_id("cap-3");

  v1::CommandResult r = run(c, {}, {}, &capture);

  EXPECT_TRUE(r.refused());
  for (const auto& e : host_.events) EXPECT_EQ(e.find("collect"), std::string::npos) << e;
}

TEST_F(ProcessActionsOrder, KillProcessTreeWithoutFreezeRecordsNothing) {
  v1::Command c;
  c.set_id("cmd-2");
  c.mutable_kill_process()->set_pid(101);
  c.mutable_kill_process()->set_tree(true);

  v1::CommandResult r = run(c, {flowOwnedBy(101)});

  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_THAT(host_.events, ElementsAre("scan+sockets", "stop 101",      //
                                        "scan", "stop 101", "stop 102",  // the late fork
                                        "scan",                          //
                                        "cut", "cut flow of 101",        //
                                        "kill 101", "kill 102"));
  EXPECT_TRUE(host_.procs.count(100));
}

TEST_F(ProcessActionsOrder, OnlyProtectedProcessesIsRefusedBeforeAnythingIsStopped) {
  v1::Command c;
  c.set_id("cmd-3");
  c.mutable_kill_process()->set_pid(1);

  v1::CommandResult r = run(c, {});

  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.refused()) << r.error();
  EXPECT_THAT(host_.events, ElementsAre("scan+sockets"));
}

TEST_F(ProcessActionsOrder, AKillProcessWithoutAMatchIsRefusedBeforeAnythingIsScanned) {
  for (int variant = 0; variant < 2; ++variant) {
    v1::Command c;
    c.set_id("cmd-4");
    c.mutable_kill_process()->set_tree(true);
    if (variant == 1) c.mutable_kill_process()->set_pid(0);   // set, but no process
    v1::CommandResult r = run(c, {});
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(r.refused()) << r.error();
    EXPECT_NE(r.error().find("exactly one of"), std::string::npos) << r.error();
    EXPECT_TRUE(host_.events.empty());
  }
}

TEST_F(ProcessActionsOrder, AProcessWhosePidWasReusedIsNeverSignalled) {
  PinnedProcesses pinned(&procfs_, &signaller_);
  ProcessInfo chosen = host_.procs[101];
  host_.procs[101].start_ticks += 1;  // 101 exited and its pid now names another process
  std::string why;
  EXPECT_FALSE(pinned.pin(chosen, &why));
  EXPECT_EQ(why, "pid reused by another process: not signalled");
  pinned.signalAll(SIGKILL);
  EXPECT_TRUE(host_.events.empty());
}

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

TEST(ProcessActions, KillOfAProcessWithANonUtf8ArgvGivesValidUtf8) {
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
  LinuxProcFs procfs;
  PidfdSignaller signaller;
  ProcessActions actions(&sessions, nullptr, &procfs, &signaller, options);
  v1::Command c;
  c.set_id("cmd-1");
  c.mutable_kill_process()->set_pid(child);
  v1::CommandResult r = actions.run(c);
  int wstatus = 0;
  ::waitpid(child, &wstatus, 0);
  EXPECT_TRUE(r.ok()) << r.error();
  // Proto strings must be UTF-8: the result serialises and parses back.
  v1::CommandResult back;
  ASSERT_TRUE(back.ParseFromString(r.SerializeAsString()));
  ASSERT_EQ(back.kill_processes().killed_size(), 1) << back.DebugString();
  EXPECT_EQ(back.kill_processes().killed(0).pid(), child);
  EXPECT_EQ(back.kill_processes().killed(0).cmdline(), "\xef\xbf\xbd\xef\xbf\xbd-sleeper 30");
  EXPECT_TRUE(WIFSIGNALED(wstatus));
}

}  // namespace
}  // namespace bulkhead::agent
