// Sessions and processes through the real server: operator call -> Command on the agent's
// stream -> CommandResult -> response and audit row; refusals, timeouts, offline and unknown
// hosts, roles and bad input.
#include <algorithm>

#include "tests/unit/controller/server_harness.h"

namespace bulkhead::controller {
namespace {

using namespace bulkhead::controller::testing;
namespace v1 = bulkhead::v1;

class HostActionsTest : public ServerTest {
 protected:
  struct Call {
    grpc::Status status;
    v1::HostActionResponse resp;
  };
  std::future<Call> killSessionsAsync(v1::KillSessionsRequest req, Role role = Role::kResponder) {
    return std::async(std::launch::async, [this, req, role] {
      auto stub = op(role, "rita");
      grpc::ClientContext ctx;
      deadline(&ctx);
      Call c;
      c.status = stub->KillSessions(&ctx, req, &c.resp);
      return c;
    });
  }
  std::future<Call> killProcessAsync(v1::KillProcessRequest req, Role role = Role::kResponder) {
    return std::async(std::launch::async, [this, req, role] {
      auto stub = op(role, "rita");
      grpc::ClientContext ctx;
      deadline(&ctx);
      Call c;
      c.status = stub->KillProcess(&ctx, req, &c.resp);
      return c;
    });
  }
  std::future<Call> listAsync(const std::string& host, Role role = Role::kViewer) {
    return std::async(std::launch::async, [this, host, role] {
      auto stub = op(role, "vera");
      grpc::ClientContext ctx;
      deadline(&ctx);
      v1::ListSessionsRequest req;
      req.set_host(host);
      Call c;
      c.status = stub->ListSessions(&ctx, req, &c.resp);
      return c;
    });
  }
  static Call get(std::future<Call>& f) {
    EXPECT_EQ(f.wait_for(kWait), std::future_status::ready);
    return f.get();
  }
  static v1::KillSessionsRequest fromReq(const std::string& host, const std::string& cidr) {
    v1::KillSessionsRequest r;
    r.set_host(host);
    r.mutable_match()->set_from_cidr(cidr);
    r.set_reason("INC-77");
    r.set_wait_ms(5000);
    return r;
  }
  // Answers `c` with `result` (its typed result, if any) and ok, refused, error.
  static void answer(FakeAgent& a, const v1::Command& c, bool ok, bool refused,
                     const std::string& error, v1::CommandResult result = {}) {
    v1::AgentMessage m;
    auto* r = m.mutable_command_result();
    *r = std::move(result);
    r->set_command_id(c.id());
    r->set_ok(ok);
    r->set_refused(refused);
    r->set_error(error);
    ASSERT_TRUE(a.write(m));
  }
  // Answers `c` as an agent one version behind: the result as a JSON document in result_json.
  static void answerAsOlderAgent(FakeAgent& a, const v1::Command& c, bool ok,
                                 const std::string& error, const std::string& json) {
    v1::AgentMessage m;
    auto* r = m.mutable_command_result();
    r->set_command_id(c.id());
    r->set_ok(ok);
    r->set_error(error);
    r->GetReflection()->SetString(r, r->GetDescriptor()->FindFieldByName("result_json"), json);
    ASSERT_TRUE(a.write(m));
  }
  static v1::ProcessEntry process(int pid, const std::string& user, const std::string& cmdline,
                                  const std::string& why = "") {
    v1::ProcessEntry p;
    p.set_pid(pid);
    p.set_user(user);
    p.set_cmdline(cmdline);
    p.set_why(why);
    return p;
  }
  // What an agent answers to the kill of session 7 (mallory from 10.77.0.66).
  static v1::CommandResult killedSession7() {
    v1::CommandResult r;
    v1::KillProcessesResult& k = *r.mutable_kill_processes();
    v1::SessionRecord& s = *k.add_sessions();
    s.set_id(7);
    s.set_user("mallory");
    s.set_remote("10.77.0.66");
    *k.add_killed() = process(41, "mallory", "sleep 1000");
    *k.add_spared() = process(1, "root", "init", "pid 1");
    k.set_connections_cut(1);
    return r;
  }
  static constexpr const char* kKilledSession7Json =
      R"({"sessions":[{"id":7,"user":"mallory","remote":"10.77.0.66"}],)"
      R"("killed":[{"pid":41,"user":"mallory","cmdline":"sleep 1000"}],)"
      R"("spared":[{"pid":1,"user":"root","cmdline":"init","why":"pid 1"}],"connections_cut":1})";
  static constexpr const char* kKilledSession7Detail =
      "sessions 1: 7 mallory from 10.77.0.66; killed 1: 41 mallory (sleep 1000); "
      "spared 1: 1 root (init) [pid 1]; connections cut 1";
  const AuditEntry* lastAudit(const std::string& action) {
    rows_ = auditRows();
    for (auto it = rows_.rbegin(); it != rows_.rend(); ++it) {
      if (it->action == action) return &*it;
    }
    return nullptr;
  }
  std::vector<AuditEntry> rows_;
};

TEST_F(HostActionsTest, KillSessionsRoundTripIsAuditedWithWhatDied) {
  auto a = online("h1");
  auto f = killSessionsAsync(fromReq("h1", "10.77.0.66/32"));
  v1::Command c = nextCommand(*a);
  ASSERT_TRUE(c.has_kill_sessions());
  EXPECT_EQ(c.kill_sessions().from_cidr(), "10.77.0.66/32");
  EXPECT_EQ(c.reason(), "INC-77");
  EXPECT_EQ(c.requested_by(), "rita");
  EXPECT_GT(c.deadline_unix_ms(), 0);
  answer(*a, c, true, false, "", killedSession7());
  Call r = get(f);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_TRUE(r.resp.ok());
  EXPECT_EQ(r.resp.host_id(), "h1");
  ASSERT_TRUE(r.resp.has_kill_processes());
  EXPECT_EQ(r.resp.kill_processes().killed(0).cmdline(), "sleep 1000");
  const AuditEntry* row = lastAudit("kill-sessions.result");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->operator_name, "rita");
  EXPECT_EQ(row->target, "h1");
  EXPECT_EQ(row->reason, "INC-77");
  EXPECT_EQ(row->outcome, "ok");
  EXPECT_NE(row->detail.find("7 mallory from 10.77.0.66"), std::string::npos) << row->detail;
  EXPECT_NE(row->detail.find("killed 1: 41 mallory (sleep 1000)"), std::string::npos) << row->detail;
  EXPECT_NE(row->detail.find("spared 1: 1 root (init) [pid 1]"), std::string::npos) << row->detail;
  EXPECT_EQ(row->detail, kKilledSession7Detail);
}

TEST_F(HostActionsTest, AnOlderAgentsDocumentIsConvertedAndAuditedAlike) {
  auto a = online("h1");
  auto f = killSessionsAsync(fromReq("h1", "10.77.0.66/32"));
  v1::Command c = nextCommand(*a);
  answerAsOlderAgent(*a, c, true, "", kKilledSession7Json);
  Call r = get(f);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_TRUE(r.resp.ok()) << r.resp.error();
  EXPECT_EQ(r.resp.error(), "");
  v1::HostActionResponse want;
  want.set_host_id("h1");
  want.set_ok(true);
  *want.mutable_kill_processes() = killedSession7().kill_processes();
  want.set_tenant("default");
  EXPECT_EQ(r.resp.SerializeAsString(), want.SerializeAsString()) << r.resp.DebugString();
  const AuditEntry* row = lastAudit("kill-sessions.result");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->outcome, "ok");
  EXPECT_EQ(row->detail, kKilledSession7Detail);
}

TEST_F(HostActionsTest, AgentRefusalIsAFailedPreconditionAndAudited) {
  auto a = online("h1");
  v1::KillProcessRequest req;
  req.set_host("h1");
  req.mutable_match()->set_pid(1);
  req.set_reason("INC-77");
  auto f = killProcessAsync(req);
  v1::Command c = nextCommand(*a);
  ASSERT_TRUE(c.has_kill_process());
  EXPECT_EQ(c.kill_process().match_case(), v1::KillProcess::kPid);
  EXPECT_EQ(c.kill_process().pid(), 1);
  answer(*a, c, false, true, "--pid 1 touches only protected processes: pid 1 (pid 1); nothing killed");
  Call r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(r.status.error_message().find("only protected"), std::string::npos);
  const AuditEntry* row = lastAudit("kill-process.result");
  ASSERT_NE(row, nullptr);
  EXPECT_NE(row->outcome, "ok");
}

TEST_F(HostActionsTest, AgentFailureIsReportedWithItsPartialResult) {
  auto a = online("h1");
  auto f = killSessionsAsync(fromReq("h1", "10.77.0.0/16"));
  v1::Command c = nextCommand(*a);
  v1::CommandResult partial;
  partial.mutable_kill_processes()->add_still_alive()->set_pid(9);
  answer(*a, c, false, false, "1 process(es) still alive", partial);
  Call r = get(f);
  ASSERT_TRUE(r.status.ok());
  EXPECT_FALSE(r.resp.ok());
  EXPECT_FALSE(r.resp.refused());
  EXPECT_EQ(r.resp.error(), "1 process(es) still alive");
  EXPECT_EQ(r.resp.kill_processes().still_alive(0).pid(), 9);
  const AuditEntry* row = lastAudit("kill-sessions.result");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->detail.rfind("FAILED: 1 process(es) still alive", 0), 0u) << row->detail;
}

TEST_F(HostActionsTest, AnOlderAgentsDocumentThatDoesNotReadFailsTheResultSayingSo) {
  auto a = online("h1");
  auto f = killSessionsAsync(fromReq("h1", "10.77.0.66/32"));
  v1::Command c = nextCommand(*a);
  // Fields of the wrong type (a hostile or broken agent).
  answerAsOlderAgent(*a, c, true, "",
                     R"({"sessions":[{"id":"seven","user":7,"remote":[],"tty":{}},3],)"
                     R"("killed":[{"pid":"41","user":null,"cmdline":12},"x"],)"
                     R"("spared":{"pid":1},"frozen":"yes","connections_cut":"many"})");
  Call r = get(f);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_FALSE(r.resp.ok());
  EXPECT_FALSE(r.resp.has_kill_processes());
  EXPECT_EQ(r.resp.error(),
            "h1: the result of an older agent could not be read: the agent's result document "
            "does not read: frozen: not true or false");
  const AuditEntry* row = lastAudit("kill-sessions.result");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->detail, "FAILED: " + r.resp.error() + "; ");
  // A document that is not an object, or nests without end, is not read either; the agent's
  // own error is kept first.
  auto g = killSessionsAsync(fromReq("h1", "10.77.0.66/32"));
  v1::Command d = nextCommand(*a);
  answerAsOlderAgent(*a, d, false, "1 process(es) still alive",
                     std::string(100000, '[') + std::string(100000, ']'));
  Call deep = get(g);
  ASSERT_TRUE(deep.status.ok()) << deep.status.error_message();
  EXPECT_EQ(deep.resp.error(),
            "1 process(es) still alive; h1: the result of an older agent could not be read: "
            "the agent's result document is not a JSON object");
}

TEST_F(HostActionsTest, NoAnswerTimesOutAndALateAnswerIsIgnored) {
  auto a = online("h1");
  auto req = fromReq("h1", "10.77.0.66/32");
  req.set_wait_ms(200);
  auto f = killSessionsAsync(req);
  v1::Command c = nextCommand(*a);
  Call r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  answer(*a, c, true, false, "");   // too late: dropped, nothing crashes
  auto g = listAsync("h1");
  v1::Command l = nextCommand(*a);
  EXPECT_TRUE(l.has_list_sessions());
  v1::CommandResult none;
  none.mutable_list_sessions()->set_source("proc");
  answer(*a, l, true, false, "", none);
  Call lr = get(g);
  ASSERT_TRUE(lr.status.ok()) << lr.status.error_message();   // viewers may list
  EXPECT_TRUE(lr.resp.ok());
}

TEST_F(HostActionsTest, OfflineUnknownHostsRolesAndBadInput) {
  {
    auto a = online("h1");
    ASSERT_TRUE(a->finish().ok());
  }
  ASSERT_TRUE(eventually([&] { return !listedOnline("h1"); }));
  auto f = killSessionsAsync(fromReq("h1", "10.0.0.1"));
  Call r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(r.status.error_message().find("offline"), std::string::npos);
  f = killSessionsAsync(fromReq("nope", "10.0.0.1"));
  EXPECT_EQ(get(f).status.error_code(), grpc::StatusCode::NOT_FOUND);
  f = killSessionsAsync(fromReq("h1", "10.0.0.1"), Role::kViewer);
  EXPECT_EQ(get(f).status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto bad = fromReq("h1", "10.0.0.999");
  f = killSessionsAsync(bad);
  EXPECT_EQ(get(f).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto two = fromReq("h1", "10.0.0.1");
  two.mutable_match()->set_all(true);
  f = killSessionsAsync(two);
  EXPECT_EQ(get(f).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto noreason = fromReq("h1", "10.0.0.1");
  noreason.set_reason(" ");
  f = killSessionsAsync(noreason);
  EXPECT_EQ(get(f).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::KillProcessRequest rel;
  rel.set_host("h1");
  rel.mutable_match()->set_exe("sleep");
  rel.set_reason("x");
  auto p = killProcessAsync(rel);
  EXPECT_EQ(get(p).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // every refusal is audited too
  rows_ = auditRows();
  EXPECT_GE(std::count_if(rows_.begin(), rows_.end(),
                          [](const AuditEntry& e) { return e.action == "kill-sessions"; }),
            6);
}

TEST_F(HostActionsTest, ShutdownFinishesAWaitingCall) {
  auto a = online("h1");
  auto req = fromReq("h1", "10.77.0.66/32");
  req.set_wait_ms(60000);
  auto f = killSessionsAsync(req);
  v1::Command c = nextCommand(*a);
  EXPECT_TRUE(c.has_kill_sessions());
  auto started = std::chrono::steady_clock::now();
  server_->shutdown();
  Call r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(8));
}

// The accepted row is durable before the agent sees the command, the result row follows the
// answer, and a controller that stops in between leaves the accepted row on disk.
TEST_F(HostActionsTest, WriteActionsAreAuditedAsAcceptedBeforeTheyAreSent) {
  auto a = online("h1");
  v1::KillProcessRequest req;
  req.set_host("h1");
  req.mutable_match()->set_pid(4242);
  req.set_reason("INC-77");
  req.set_wait_ms(60000);
  auto f = killProcessAsync(req);
  v1::Command c = nextCommand(*a);   // the agent holds the command and has not answered
  ASSERT_TRUE(c.has_kill_process());
  const AuditEntry* accepted = lastAudit("kill-process");
  ASSERT_NE(accepted, nullptr);
  EXPECT_EQ(accepted->outcome, "accepted");
  EXPECT_EQ(accepted->detail, "pid 4242");
  EXPECT_EQ(accepted->operator_name, "rita");
  EXPECT_EQ(accepted->reason, "INC-77");
  const int64_t accepted_id = accepted->id;
  EXPECT_EQ(lastAudit("kill-process.result"), nullptr);
  v1::CommandResult killed;
  *killed.mutable_kill_processes()->add_killed() = process(4242, "mallory", "nc");
  answer(*a, c, true, false, "", killed);
  Call r = get(f);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const AuditEntry* result = lastAudit("kill-process.result");
  ASSERT_NE(result, nullptr);
  EXPECT_GT(result->id, accepted_id);
  EXPECT_EQ(result->outcome, "ok");
  EXPECT_NE(result->detail.find("killed 1: 4242 mallory (nc)"), std::string::npos)
      << result->detail;

  // kill-sessions and kill-connections alike; the agent never answers and the controller
  // stops: the accepted rows are on disk (read through a second connection).
  auto s = killSessionsAsync(fromReq("h1", "10.77.0.66/32"));
  c = nextCommand(*a);
  ASSERT_TRUE(c.has_kill_sessions());
  auto kc = std::async(std::launch::async, [this] {
    auto stub = op(Role::kResponder, "rita");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::KillConnectionsRequest kr;
    kr.set_host("h1");
    kr.set_remote_cidr("10.77.0.66/32");
    kr.set_port(22);
    kr.set_reason("INC-77");
    kr.set_wait_ms(60000);
    Call call;
    call.status = stub->KillConnections(&ctx, kr, &call.resp);
    return call;
  });
  c = nextCommand(*a);
  ASSERT_TRUE(c.has_kill_connections());
  auto second = SqliteStore::create(dir_ / "controller.db");
  ASSERT_TRUE(second.ok()) << second.status();
  auto rows = (*second)->listAudit(0);
  ASSERT_TRUE(rows.ok());
  std::map<std::string, const AuditEntry*> latest;
  for (const auto& e : *rows) latest[e.action] = &e;
  ASSERT_TRUE(latest.count("kill-sessions"));
  EXPECT_EQ(latest["kill-sessions"]->outcome, "accepted");
  EXPECT_EQ(latest["kill-sessions"]->detail, "from 10.77.0.66/32");
  ASSERT_TRUE(latest.count("kill-connections"));
  EXPECT_EQ(latest["kill-connections"]->outcome, "accepted");
  EXPECT_EQ(latest["kill-connections"]->detail, "remote 10.77.0.66/32 port 22");
  EXPECT_FALSE(latest.count("kill-sessions.result"));
  EXPECT_FALSE(latest.count("kill-connections.result"));
  server_->shutdown();
  EXPECT_EQ(get(s).status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(get(kc).status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(HostActionsTest, NothingIsSentWhenTheAcceptedRowCannotBeWritten) {
  auto a = online("h1");
  ASSERT_TRUE(store_
                  ->execForTest("CREATE TRIGGER refuse_accepted BEFORE INSERT ON audit "
                                "WHEN NEW.outcome = 'accepted' "
                                "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
                  .ok());
  auto f = killSessionsAsync(fromReq("h1", "10.77.0.66/32"));
  Call r = get(f);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(r.status.error_message().find("nothing sent"), std::string::npos)
      << r.status.error_message();
  // The next command the agent sees is the listing, not the kill.
  auto g = listAsync("h1");
  v1::Command l = nextCommand(*a);
  EXPECT_TRUE(l.has_list_sessions());
  EXPECT_FALSE(l.has_kill_sessions());
  v1::CommandResult none;
  none.mutable_list_sessions()->set_source("proc");
  answer(*a, l, true, false, "", none);
  EXPECT_TRUE(get(g).status.ok());
}

}  // namespace
}  // namespace bulkhead::controller
