// Isolate and release through the real server: operator call -> desired state pushed on the
// agent's stream -> StateReport -> per-host outcome; with exemption sets from a policy
// library, the guardrails, TTL expiry on a fake clock and dry runs.
#include <algorithm>
#include <condition_variable>
#include <limits>
#include <mutex>

#include "tests/unit/controller/server_harness.h"
#include "tests/unit/controller/test_policies.h"

namespace bulkhead::controller {
namespace {

using namespace bulkhead::controller::testing;
namespace v1 = bulkhead::v1;
using std::chrono::milliseconds;

class ContainmentServerTest : public ServerTest {
 protected:
  void configure(ServerOptions& o) override {
    v1::Endpoint e;
    e.set_ip("10.77.0.1");
    e.set_port(7443);
    o.containment.endpoints = endpoints_ ? *endpoints_ : std::vector<v1::Endpoint>{e};
    o.containment.selector_limit = 2;
    o.containment.expiry_interval = milliseconds(50);
    o.policies = &policies_;
  }

  struct Call {
    grpc::Status status;
    v1::ContainmentResponse resp;
  };
  std::future<Call> isolateAsync(v1::IsolateRequest req, Role role = Role::kResponder) {
    return std::async(std::launch::async, [this, req, role] {
      auto stub = op(role, "rita");
      grpc::ClientContext ctx;
      deadline(&ctx);
      Call c;
      c.status = stub->Isolate(&ctx, req, &c.resp);
      return c;
    });
  }
  std::future<Call> releaseAsync(v1::ReleaseRequest req) {
    return std::async(std::launch::async, [this, req] {
      auto stub = op(Role::kResponder, "rita");
      grpc::ClientContext ctx;
      deadline(&ctx);
      Call c;
      c.status = stub->Release(&ctx, req, &c.resp);
      return c;
    });
  }
  static v1::IsolateRequest isolateReq(std::vector<std::string> hosts, uint32_t wait_ms = 5000) {
    v1::IsolateRequest r;
    for (auto& h : hosts) r.mutable_targets()->mutable_hosts()->add_ids(h);
    r.set_reason("INC-42");
    r.set_wait_ms(wait_ms);
    return r;
  }
  static Call get(std::future<Call>& f) {
    EXPECT_EQ(f.wait_for(kWait), std::future_status::ready);
    return f.get();
  }
  v1::HostStatus status(const std::string& host) {
    auto stub = op(Role::kViewer, "victor");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::GetHostRequest req;
    req.set_host(host);
    v1::HostStatus st;
    EXPECT_TRUE(stub->GetHost(&ctx, req, &st).ok());
    return st;
  }

  Policies policies_{testPolicyLibrary()};
  std::optional<std::vector<v1::Endpoint>> endpoints_;
};

TEST_F(ContainmentServerTest, IsolateIsPushedAcknowledgedAndShownInStatus) {
  auto a = agent("db-01");
  ASSERT_TRUE(a->connect("db-01", {{"role", "db"}}));
  auto call = isolateAsync(isolateReq({"db-01"}));
  v1::ControllerMessage m;
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kDesiredState, &m));
  const auto& d = m.desired_state();
  EXPECT_EQ(d.generation(), 1u);
  EXPECT_TRUE(d.isolation().enabled());
  EXPECT_EQ(d.isolation().reason(), "INC-42");
  EXPECT_EQ(d.isolation().requested_by(), "rita");
  ASSERT_EQ(d.isolation().exemption_sets_size(), 2);   // defaults: "*" and role=db
  EXPECT_EQ(d.isolation().exemption_sets(0), "ir-jump-host");
  EXPECT_EQ(d.isolation().exemption_sets(1), "postgres-replication");
  ASSERT_EQ(d.isolation().exemptions_size(), 2);
  EXPECT_EQ(d.isolation().exemptions(1).remote_cidr(), "10.77.1.22/32");
  EXPECT_EQ(d.isolation().exemptions(1).set_name(), "postgres-replication");
  ASSERT_EQ(d.controller_endpoints_size(), 1);
  EXPECT_EQ(d.controller_endpoints(0).ip(), "10.77.0.1");
  ASSERT_TRUE(a->report(1, true, "hash-1", 3));

  Call c = get(call);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  ASSERT_EQ(c.resp.outcomes_size(), 1);
  const auto& o = c.resp.outcomes(0);
  EXPECT_EQ(o.host_id(), "db-01");
  EXPECT_EQ(o.state(), v1::HostOutcome::STATE_ENFORCED);
  EXPECT_EQ(o.generation(), 1u);
  EXPECT_EQ(o.report().ruleset_hash(), "hash-1");
  EXPECT_EQ(o.report().flows_cut(), 3u);
  EXPECT_EQ(o.exemption_sets_size(), 2);

  auto st = status("db-01");
  EXPECT_TRUE(st.host().isolated());
  EXPECT_EQ(st.host().desired_generation(), 1u);
  EXPECT_EQ(st.host().enforced_generation(), 1u);
  EXPECT_EQ(st.host().ruleset_hash(), "hash-1");
  EXPECT_TRUE(st.desired().isolation().enabled());
  EXPECT_EQ(st.last_report().flows_cut(), 3u);

  auto rows = auditRows();
  ASSERT_GE(rows.size(), 2u);
  const AuditEntry* change = nullptr;
  const AuditEntry* result = nullptr;
  for (const auto& r : rows) {
    if (r.action == "isolate") change = &r;
    if (r.action == "isolate.result") result = &r;
  }
  ASSERT_NE(change, nullptr);
  ASSERT_NE(result, nullptr);
  EXPECT_EQ(change->operator_name, "rita");
  EXPECT_EQ(change->target, "db-01");
  EXPECT_EQ(change->reason, "INC-42");
  EXPECT_EQ(change->outcome, "ok");
  EXPECT_NE(change->detail.find("postgres-replication"), std::string::npos);
  EXPECT_EQ(result->outcome, "ok");
  EXPECT_LT(change->id, result->id);

  // Release: isolation off, next generation.
  v1::ReleaseRequest rel;
  rel.mutable_targets()->mutable_hosts()->add_ids("db-01");
  rel.set_reason("INC-42 contained");
  auto rcall = releaseAsync(rel);
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kDesiredState, &m));
  EXPECT_EQ(m.desired_state().generation(), 2u);
  EXPECT_FALSE(m.desired_state().isolation().enabled());
  EXPECT_EQ(m.desired_state().controller_endpoints_size(), 1);
  ASSERT_TRUE(a->report(2, true, "hash-2"));
  Call r = get(rcall);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.resp.outcomes(0).state(), v1::HostOutcome::STATE_ENFORCED);
  EXPECT_FALSE(status("db-01").host().isolated());
}

TEST_F(ContainmentServerTest, AgentFailureIsReportedWithTheReason) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  auto call = isolateAsync(isolateReq({"web-01"}));
  v1::ControllerMessage m;
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kDesiredState, &m));
  ASSERT_TRUE(a->report(1, false, "old", 0, "nft: syntax error"));
  Call c = get(call);
  ASSERT_TRUE(c.status.ok());
  const auto& o = c.resp.outcomes(0);
  EXPECT_EQ(o.state(), v1::HostOutcome::STATE_FAILED);
  EXPECT_NE(o.error().find("nft: syntax error"), std::string::npos);
  EXPECT_NE(o.error().find("closed"), std::string::npos);
  EXPECT_TRUE(o.report().left_closed());
  auto rows = auditRows();
  EXPECT_EQ(rows.back().action, "isolate.result");
  EXPECT_EQ(rows.back().outcome.rfind("error: ", 0), 0u);
}

// The disk fails in the middle of a change: the new desired state is written, then its audit
// row is refused, so the transaction must roll back. The operator is told nothing was applied,
// the agent is sent nothing, no generation is used up, and the acknowledged isolation of
// another host survives a restart.
TEST_F(ContainmentServerTest, AnIsolateWhoseCommitFailsMidwayAppliesNothingAndLosesNothing) {
  auto a1 = agent("web-01");
  ASSERT_TRUE(a1->connect("web-01", {}, "10.77.1.11/16"));
  auto a2 = agent("web-02");
  ASSERT_TRUE(a2->connect("web-02", {}, "10.77.1.12/16"));
  auto first = isolateAsync(isolateReq({"web-01"}));
  v1::ControllerMessage m;
  ASSERT_TRUE(a1->readUntil(v1::ControllerMessage::kDesiredState, &m));
  ASSERT_TRUE(a1->report(1, true, "hash-1"));
  ASSERT_TRUE(get(first).status.ok());

  failInserts("audit", "NEW.action = 'isolate' AND NEW.outcome = 'ok'");
  auto second = isolateAsync(isolateReq({"web-02"}));
  Call failed = get(second);
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(failed.status.error_message().find("nothing applied"), std::string::npos)
      << failed.status.error_message();
  EXPECT_NE(failed.status.error_message().find("disk I/O error"), std::string::npos)
      << failed.status.error_message();
  EXPECT_FALSE(status("web-02").desired().isolation().enabled());
  EXPECT_EQ(status("web-02").host().desired_generation(), 0u);
  EXPECT_TRUE(status("web-01").host().isolated());
  // The refused call is in the audit trail, and the chain still verifies.
  const auto rows = auditRows();
  const AuditEntry* refused = nullptr;
  for (const auto& r : rows) {
    if (r.action == "isolate" && r.target == "web-02") refused = &r;
  }
  ASSERT_NE(refused, nullptr);
  EXPECT_EQ(refused->outcome.rfind("error: ", 0), 0u) << refused->outcome;
  EXPECT_TRUE(store_->verifyAudit()->ok);

  stopFailingInserts("audit");
  a1.reset();
  a2.reset();
  server_.reset();
  store_.reset();
  openStore();
  startServer();
  EXPECT_TRUE(status("web-01").desired().isolation().enabled());
  EXPECT_FALSE(status("web-02").desired().isolation().enabled());
  // The first desired state web-02 ever receives is generation 1: the failed change took none.
  auto b2 = agent("web-02");
  ASSERT_TRUE(b2->connect("web-02", {}, "10.77.1.12/16"));
  auto again = isolateAsync(isolateReq({"web-02"}));
  ASSERT_TRUE(b2->readUntil(v1::ControllerMessage::kDesiredState, &m));
  EXPECT_EQ(m.desired_state().generation(), 1u);
  EXPECT_TRUE(m.desired_state().isolation().enabled());
  ASSERT_TRUE(b2->report(1, true, "hash-2"));
  Call c = get(again);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(c.resp.outcomes(0).state(), v1::HostOutcome::STATE_ENFORCED);
}

TEST_F(ContainmentServerTest, NoAcknowledgementWithinTheWaitIsPending) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  auto start = std::chrono::steady_clock::now();
  auto call = isolateAsync(isolateReq({"web-01"}, 300));
  Call c = get(call);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(c.status.ok());
  EXPECT_EQ(c.resp.outcomes(0).state(), v1::HostOutcome::STATE_PENDING);
  EXPECT_NE(c.resp.outcomes(0).error().find("no acknowledgement within 300 ms"),
            std::string::npos);
  EXPECT_GE(took, milliseconds(250));
  // The state stays desired; a late acknowledgement shows in the status.
  ASSERT_TRUE(a->report(1, true, "late"));
  EXPECT_TRUE(eventually([&] { return status("web-01").host().enforced_generation() == 1; }));
}

TEST_F(ContainmentServerTest, OfflineHostIsPendingAndIsolatedWhenItReconnects) {
  {
    auto a = agent("web-01");
    ASSERT_TRUE(a->connect("web-01"));
    ASSERT_TRUE(a->finish().ok());
  }
  ASSERT_TRUE(eventually([&] { return !listedOnline("web-01"); }));
  auto call = isolateAsync(isolateReq({"web-01"}));
  Call c = get(call);
  ASSERT_TRUE(c.status.ok());
  EXPECT_EQ(c.resp.outcomes(0).state(), v1::HostOutcome::STATE_PENDING);
  EXPECT_NE(c.resp.outcomes(0).error().find("offline"), std::string::npos);

  auto again = agent("web-01");
  ASSERT_TRUE(again->hello("web-01"));
  v1::ControllerMessage m;
  ASSERT_TRUE(again->read(&m));
  EXPECT_TRUE(m.has_welcome());   // Welcome first, then the current desired state
  ASSERT_TRUE(again->read(&m));
  ASSERT_TRUE(m.has_desired_state());
  EXPECT_EQ(m.desired_state().generation(), 1u);
  EXPECT_TRUE(m.desired_state().isolation().enabled());
}

TEST_F(ContainmentServerTest, DesiredStateSurvivesARestart) {
  {
    auto a = agent("web-01");
    ASSERT_TRUE(a->connect("web-01"));
    auto call = isolateAsync(isolateReq({"web-01"}, 200));
    get(call);
  }
  server_.reset();
  store_.reset();
  openStore();
  startServer();
  EXPECT_TRUE(status("web-01").desired().isolation().enabled());
  auto a = agent("web-01");
  ASSERT_TRUE(a->hello("web-01"));
  v1::ControllerMessage m;
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kDesiredState, &m));
  EXPECT_EQ(m.desired_state().generation(), 1u);
}

TEST_F(ContainmentServerTest, RefusalsNameTheProblemAndApplyNothing) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01", {{"role", "web"}}));
  auto b = agent("web-02");
  ASSERT_TRUE(b->connect("web-02", {{"role", "web"}}));
  auto c3 = agent("web-03");
  ASSERT_TRUE(c3->connect("web-03", {{"role", "web"}}));
  struct Case {
    v1::IsolateRequest req;
    grpc::StatusCode code;
    std::string message;   // substring
  };
  std::vector<Case> cases;
  {
    auto r = isolateReq({"web-01", "nope-7"});
    cases.push_back({r, grpc::StatusCode::NOT_FOUND, "unknown host \"nope-7\""});
  }
  {
    auto r = isolateReq({"web-01", "web-02"});
    r.add_exempt_sets("nfs");
    cases.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "\"nfs\""});
  }
  {
    auto r = isolateReq({"web-01"});
    r.set_reason(" ");
    cases.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "reason: required"});
  }
  {
    v1::IsolateRequest r;
    r.mutable_targets()->set_selector("role=web");
    r.set_reason("INC-42");
    cases.push_back({r, grpc::StatusCode::FAILED_PRECONDITION, "matches 3 hosts"});
  }
  {
    v1::IsolateRequest r;   // no targets at all
    r.set_reason("INC-42");
    cases.push_back(
        {r, grpc::StatusCode::INVALID_ARGUMENT, "targets: name one or more hosts, or a selector"});
  }
  {
    v1::IsolateRequest r;
    r.mutable_targets()->set_selector("role");
    r.set_reason("INC-42");
    cases.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "selector"});
  }
  for (auto& c : cases) {
    auto f = isolateAsync(c.req);
    Call res = get(f);
    EXPECT_EQ(res.status.error_code(), c.code) << c.message << ": " << res.status.error_message();
    EXPECT_NE(res.status.error_message().find(c.message), std::string::npos)
        << res.status.error_message();
    auto rows = auditRows();
    EXPECT_EQ(rows.back().action, "isolate");
    EXPECT_EQ(rows.back().outcome.rfind("error: ", 0), 0u) << rows.back().outcome;
  }
  for (const char* h : {"web-01", "web-02", "web-03"}) {
    EXPECT_EQ(status(h).host().desired_generation(), 0u) << h;
  }
  // A viewer may not isolate.
  auto f = isolateAsync(isolateReq({"web-01"}), Role::kViewer);
  EXPECT_EQ(get(f).status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // With --yes the selector applies to all three.
  v1::IsolateRequest yes;
  yes.mutable_targets()->set_selector("role=web");
  yes.set_reason("INC-42");
  yes.set_yes(true);
  yes.set_wait_ms(200);
  auto fy = isolateAsync(yes);
  Call ry = get(fy);
  ASSERT_TRUE(ry.status.ok()) << ry.status.error_message();
  EXPECT_EQ(ry.resp.outcomes_size(), 3);
}

bool hasControl(const std::string& s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

TEST_F(ContainmentServerTest, ControlCharactersAreRefusedAndForgeNoAuditRow) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01", {{"role", "web"}}));
  const size_t before = auditRows().size();
  auto r = isolateReq({"web-01"});
  r.set_reason("INC-1\n2026-01-01T00:00:00.000Z  alice  release  web-01  ok  all clear");
  auto f = isolateAsync(r);
  Call res = get(f);
  EXPECT_EQ(res.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(res.status.error_message().rfind("reason: invalid value \"INC-1\\n2026", 0), 0u)
      << res.status.error_message();
  // A host name with a newline (a viewer's status) and an ESC sequence (isolate's host list).
  {
    auto stub = op(Role::kViewer, "victor");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::GetHostRequest req;
    req.set_host("web-01\n9  forged");
    v1::HostStatus st;
    auto s = stub->GetHost(&ctx, req, &st);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_EQ(s.error_message().rfind("host: invalid value", 0), 0u) << s.error_message();
  }
  auto esc = isolateReq({"web-01", "web-02\x1b[2J"});
  auto g = isolateAsync(esc);
  EXPECT_EQ(get(g).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Nothing applied; one audit row per refused call, every field on one line.
  EXPECT_EQ(status("web-01").host().desired_generation(), 0u);
  auto rows = auditRows();
  ASSERT_GE(rows.size(), before + 3);
  size_t refused = 0;
  for (size_t i = before; i < rows.size(); ++i) {
    const auto& row = rows[i];
    EXPECT_FALSE(hasControl(row.target) || hasControl(row.reason) || hasControl(row.outcome) ||
                 hasControl(row.detail))
        << row.action << " " << row.target << " " << row.reason;
    if (row.outcome.rfind("error: ", 0) == 0) ++refused;
  }
  EXPECT_EQ(refused, 3u);
  const auto isolate_row = std::find_if(rows.begin() + static_cast<long>(before), rows.end(),
                                        [](const AuditEntry& e) { return e.action == "isolate"; });
  ASSERT_NE(isolate_row, rows.end());
  EXPECT_EQ(isolate_row->reason.rfind("INC-1\\n2026-01-01", 0), 0u) << isolate_row->reason;
}

TEST_F(ContainmentServerTest, ATtlNearInt64MaxIsRefusedAndNothingIsApplied) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01", {{"role", "web"}}));
  auto r = isolateReq({"web-01"});
  r.set_ttl_ms(std::numeric_limits<int64_t>::max() - 1);
  auto f = isolateAsync(r);
  Call res = get(f);
  EXPECT_EQ(res.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(res.status.error_message().rfind("ttl_ms: invalid value 9223372036854775806 ms", 0), 0u)
      << res.status.error_message();
  EXPECT_EQ(auditRows().back().action, "isolate");
  EXPECT_EQ(auditRows().back().outcome.rfind("error: ttl_ms:", 0), 0u);
  EXPECT_EQ(status("web-01").host().desired_generation(), 0u);
}

TEST_F(ContainmentServerTest, TheControllersOwnHostIsNeverIsolated) {
  auto a = agent("ctl-host");
  ASSERT_TRUE(a->connect("ctl-host", {}, "10.77.0.1/16"));
  auto f = isolateAsync(isolateReq({"ctl-host"}));
  Call c = get(f);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  ASSERT_EQ(c.resp.outcomes_size(), 1);
  EXPECT_EQ(c.resp.outcomes(0).state(), v1::HostOutcome::STATE_FAILED);
  EXPECT_NE(c.resp.outcomes(0).error().find("controller's address 10.77.0.1"), std::string::npos)
      << c.resp.outcomes(0).error();
  EXPECT_NE(c.resp.outcomes(0).error().find("left open"), std::string::npos);
  auto rows = auditRows();
  EXPECT_EQ(rows.back().action, "isolate.result");
  EXPECT_EQ(rows.back().outcome.rfind("error: ", 0), 0u) << rows.back().outcome;
  EXPECT_EQ(status("ctl-host").host().desired_generation(), 0u);
}

TEST_F(ContainmentServerTest, AHostClaimingTheControllersAddressFailsAloneTheOthersAreIsolated) {
  auto honest = agent("web-01");
  ASSERT_TRUE(honest->connect("web-01", {{"role", "web"}}, "10.77.1.11/16"));
  auto liar = agent("web-02");
  ASSERT_TRUE(liar->connect("web-02", {{"role", "web"}}, "10.77.0.1/32"));
  v1::IsolateRequest by_selector;
  by_selector.mutable_targets()->set_selector("role=web");
  by_selector.set_reason("INC-42");
  by_selector.set_wait_ms(5000);
  uint64_t generation = 0;
  for (const auto& req : {isolateReq({"web-01", "web-02"}), by_selector}) {
    auto call = isolateAsync(req);
    v1::ControllerMessage m;
    ASSERT_TRUE(honest->readUntil(v1::ControllerMessage::kDesiredState, &m));
    EXPECT_TRUE(m.desired_state().isolation().enabled());
    generation = m.desired_state().generation();
    ASSERT_TRUE(honest->report(generation, true));
    Call c = get(call);
    ASSERT_TRUE(c.status.ok()) << c.status.error_message();
    ASSERT_EQ(c.resp.outcomes_size(), 2);
    std::map<std::string, v1::HostOutcome> by_host;
    for (const auto& o : c.resp.outcomes()) by_host[o.host_id()] = o;
    EXPECT_EQ(by_host["web-01"].state(), v1::HostOutcome::STATE_ENFORCED);
    EXPECT_EQ(by_host["web-02"].state(), v1::HostOutcome::STATE_FAILED);
    EXPECT_NE(by_host["web-02"].error().find("10.77.0.1"), std::string::npos);
    auto rows = auditRows();
    EXPECT_EQ(rows.back().action, "isolate.result");
    EXPECT_NE(rows.back().outcome.find("web-02"), std::string::npos) << rows.back().outcome;
  }
  EXPECT_TRUE(status("web-01").host().isolated());
  EXPECT_FALSE(status("web-02").host().isolated());
  EXPECT_EQ(status("web-02").host().desired_generation(), 0u);
  EXPECT_EQ(generation, 2u);
}

TEST_F(ContainmentServerTest, AHelloThatBreaksItsFieldsIsRefusedWithTheReason) {
  struct Case {
    std::string hostname, address, label_key, label_value, field;
  };
  for (const auto& c : std::vector<Case>{
           {"web-01\x1b[2J", "10.77.1.11/16", "role", "web", "hello.hostname"},
           {"web-01", "10.77.1.11/99", "role", "web", "hello.addresses[0]"},
           {"web-01", "127.0.0.1/8", "role", "web", "hello.addresses[0]"},
           {"web-01", "10.77.1.11/16", "role", "", "hello.labels"},
           {std::string(300, 'h'), "10.77.1.11/16", "role", "web", "hello.hostname"}}) {
    auto a = agent("web-01");
    ASSERT_TRUE(a->hello("web-01", {{c.label_key, c.label_value}}, c.hostname, c.address));
    grpc::Status s = a->finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_NE(s.error_message().find(c.field), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(hosts().hosts_size(), 0);
}

TEST_F(ContainmentServerTest, ReportedGenerationsNeverNumberOrAcknowledgeChanges) {
  // An agent that claims generation UINT64_MAX (the controller issued none).
  auto a = agent("web-01");
  ASSERT_TRUE(a->hello("web-01", {}, "web-01", "10.77.1.11/16", UINT64_MAX));
  v1::ControllerMessage m;
  ASSERT_TRUE(a->read(&m));
  ASSERT_TRUE(m.has_welcome());
  EXPECT_TRUE(eventually([&] { return status("web-01").tamper_events_size() == 1; }));
  EXPECT_NE(status("web-01").tamper_events(0).what().find("18446744073709551615"),
            std::string::npos);
  EXPECT_EQ(status("web-01").host().enforced_generation(), 0u);

  // The change is numbered from the controller's own value, and neither a heartbeat nor a
  // report claiming more than it issued acknowledges it.
  auto call = isolateAsync(isolateReq({"web-01"}, 500));
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kDesiredState, &m));
  EXPECT_EQ(m.desired_state().generation(), 1u);
  v1::AgentMessage hb;
  hb.mutable_heartbeat()->set_enforced_generation(UINT64_MAX);
  ASSERT_TRUE(a->write(hb));
  ASSERT_TRUE(a->report(UINT64_MAX, true));
  Call c = get(call);
  ASSERT_TRUE(c.status.ok());
  EXPECT_EQ(c.resp.outcomes(0).state(), v1::HostOutcome::STATE_PENDING);
  EXPECT_EQ(status("web-01").host().enforced_generation(), 0u);

  // The next change is 2, not UINT64_MAX + 1 = 0; an honest report of it acknowledges it.
  auto next = isolateAsync(isolateReq({"web-01"}));
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kDesiredState, &m));
  EXPECT_EQ(m.desired_state().generation(), 2u);
  ASSERT_TRUE(a->report(2, true));
  Call n = get(next);
  ASSERT_TRUE(n.status.ok());
  EXPECT_EQ(n.resp.outcomes(0).state(), v1::HostOutcome::STATE_ENFORCED);
  EXPECT_EQ(n.resp.outcomes(0).generation(), 2u);
  EXPECT_EQ(status("web-01").host().enforced_generation(), 2u);

  // An agent holding a newer state than this controller issued (its store restored from an
  // older copy) refuses generation 3: the failure answers, its claim of 50 stands for nothing.
  auto third = isolateAsync(isolateReq({"web-01"}));
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kDesiredState, &m));
  EXPECT_EQ(m.desired_state().generation(), 3u);
  v1::AgentMessage refusal;
  refusal.mutable_state_report()->set_generation(3);
  refusal.mutable_state_report()->set_ok(false);
  refusal.mutable_state_report()->set_enforced_generation(50);
  refusal.mutable_state_report()->set_error(
      "generation 3 is older than generation 50 this agent holds; ignored");
  ASSERT_TRUE(a->write(refusal));
  Call t = get(third);
  ASSERT_TRUE(t.status.ok());
  EXPECT_EQ(t.resp.outcomes(0).state(), v1::HostOutcome::STATE_FAILED);
  EXPECT_NE(t.resp.outcomes(0).error().find("older than generation 50"), std::string::npos);
  EXPECT_EQ(status("web-01").host().enforced_generation(), 2u);
}

TEST_F(ContainmentServerTest, TtlReleasesByItself) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  auto req = isolateReq({"web-01"});
  req.set_ttl_ms(10'000);
  auto call = isolateAsync(req);
  v1::ControllerMessage m;
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kDesiredState, &m));
  EXPECT_EQ(m.desired_state().isolation().expires_at_unix_ms(), clock_.nowUnixMs() + 10'000);
  ASSERT_TRUE(a->report(1, true));
  ASSERT_TRUE(get(call).status.ok());
  // Time passes with heartbeats (the heartbeat timeout here is 3 s).
  for (int i = 0; i < 9; ++i) {
    clock_.advance(milliseconds(1'000));
    ASSERT_TRUE(a->heartbeat());
    const int64_t at = clock_.nowUnixMs();
    ASSERT_TRUE(eventually([&] { return status("web-01").host().last_seen_unix_ms() == at; }));
  }
  clock_.advance(milliseconds(999));
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_TRUE(status("web-01").host().isolated());
  clock_.advance(milliseconds(1));
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kDesiredState, &m));
  EXPECT_EQ(m.desired_state().generation(), 2u);
  EXPECT_FALSE(m.desired_state().isolation().enabled());
  EXPECT_FALSE(status("web-01").host().isolated());
  bool audited = false;
  for (const auto& r : auditRows()) {
    if (r.action == "release" && r.operator_name == "controller" && r.reason == "ttl expired") {
      audited = true;
    }
  }
  EXPECT_TRUE(audited);
}

TEST_F(ContainmentServerTest, DryRunAsksTheAgentAndChangesNothing) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  auto req = isolateReq({"web-01"});
  req.set_dry_run(true);
  req.add_exempt_sets("dns");
  auto call = isolateAsync(req);
  v1::ControllerMessage m;
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kCommand, &m));
  ASSERT_TRUE(m.command().has_preview_state());
  EXPECT_TRUE(m.command().preview_state().state().isolation().enabled());
  EXPECT_EQ(m.command().preview_state().state().isolation().exemption_sets(0), "dns");
  v1::AgentMessage answer;
  auto* r = answer.mutable_command_result();
  r->set_command_id(m.command().id());
  r->set_ok(true);
  r->mutable_preview()->set_ruleset_text("table inet bulkhead { }");
  auto* cut = r->mutable_preview()->add_would_cut();
  cut->set_description("tcp 10.77.1.11:22 <- 10.77.0.66:51234");
  r->mutable_preview()->add_would_keep()->set_description("tcp 10.77.1.11:5432 <- 10.77.1.22:40000");
  ASSERT_TRUE(a->write(answer));
  Call c = get(call);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  const auto& o = c.resp.outcomes(0);
  EXPECT_EQ(o.state(), v1::HostOutcome::STATE_DRY_RUN);
  EXPECT_EQ(o.ruleset_text(), "table inet bulkhead { }");
  ASSERT_EQ(o.flows_cut_size(), 1);
  EXPECT_EQ(o.flows_cut(0).description(), "tcp 10.77.1.11:22 <- 10.77.0.66:51234");
  EXPECT_EQ(o.flows_kept_size(), 1);
  auto st = status("web-01");
  EXPECT_EQ(st.host().desired_generation(), 0u);
  EXPECT_FALSE(st.host().isolated());
  auto rows = auditRows();
  bool audited = false;
  for (const auto& row : rows) {
    if (row.action == "isolate" && row.detail.rfind("dry run", 0) == 0) audited = true;
  }
  EXPECT_TRUE(audited);
}

TEST_F(ContainmentServerTest, TamperEventsShowInStatus) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  v1::AgentMessage t;
  t.mutable_tamper()->set_what("table inet bulkhead deleted");
  t.mutable_tamper()->set_restored(true);
  t.mutable_tamper()->set_restore_latency_us(1200);
  ASSERT_TRUE(a->write(t));
  EXPECT_TRUE(eventually([&] { return status("web-01").tamper_events_size() == 1; }));
  EXPECT_EQ(status("web-01").tamper_events(0).what(), "table inet bulkhead deleted");

  // And on record: one audit row per host per flush, by the agent, counting its events.
  auto tamperRows = [&] {
    std::vector<AuditEntry> out;
    for (const AuditEntry& r : auditRows()) {
      if (r.action == "tamper") out.push_back(r);
    }
    return out;
  };
  ASSERT_TRUE(eventually([&] { return tamperRows().size() == 1; }));
  AuditEntry row = tamperRows()[0];
  EXPECT_EQ(row.operator_name, "agent:web-01");
  EXPECT_EQ(row.target, "web-01");
  EXPECT_EQ(row.outcome, "ok");
  EXPECT_NE(row.detail.find("1 tamper event; last at "), std::string::npos) << row.detail;
  EXPECT_NE(row.detail.find("table inet bulkhead deleted (restored in 1200 us)"), std::string::npos)
      << row.detail;
  // One that could not be restored is an error row.
  t.mutable_tamper()->set_what("chain input flushed");
  t.mutable_tamper()->set_restored(false);
  ASSERT_TRUE(a->write(t));
  ASSERT_TRUE(eventually([&] { return tamperRows().size() == 2; }));
  row = tamperRows()[1];
  EXPECT_EQ(row.outcome, "error: not restored");
  EXPECT_NE(row.detail.find("chain input flushed (not restored)"), std::string::npos) << row.detail;
}

TEST_F(ContainmentServerTest, AnIsolatedHostGoingOfflineIsAuditedOnceAndAnotherHostIsNot) {
  auto web1 = online("web-01");
  auto web2 = online("web-02");
  auto call = isolateAsync(isolateReq({"web-01"}));
  v1::ControllerMessage m;
  ASSERT_TRUE(web1->readUntil(v1::ControllerMessage::kDesiredState, &m));
  ASSERT_TRUE(web1->report(m.desired_state().generation(), true));
  ASSERT_TRUE(get(call).status.ok());
  auto offlineRows = [&] {
    std::vector<AuditEntry> out;
    for (const AuditEntry& r : auditRows()) {
      if (r.action == "host-offline") out.push_back(r);
    }
    return out;
  };
  web2->finish();
  web1->finish();
  ASSERT_TRUE(eventually([&] { return offlineRows().size() == 1; }));
  // Several flushes later, still one: web-02 was not isolated.
  std::this_thread::sleep_for(milliseconds(400));
  const std::vector<AuditEntry> rows = offlineRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].target, "web-01");
  EXPECT_EQ(rows[0].operator_name, "controller");
  EXPECT_NE(rows[0].detail.find("isolated host offline: its stream ended"), std::string::npos)
      << rows[0].detail;
}

// A resolver the test scripts: answers from a table, blocks until told otherwise (bounded), or
// fails as a broken DNS server does.
class ScriptedResolver final : public NameResolver {
 public:
  enum class Mode { kAnswer, kBlock, kFail };
  void set(Mode mode) {
    {
      std::lock_guard lock(mu_);
      mode_ = mode;
    }
    changed_.notify_all();
  }
  int blocked() {
    std::lock_guard lock(mu_);
    return blocked_;
  }
  absl::StatusOr<std::vector<std::string>> resolve(const std::string& name) override {
    std::unique_lock lock(mu_);
    if (mode_ == Mode::kBlock) {
      ++blocked_;
      changed_.wait_for(lock, std::chrono::seconds(20), [&] { return mode_ != Mode::kBlock; });
      --blocked_;
    }
    if (mode_ == Mode::kFail) return absl::UnavailableError("Temporary failure in name resolution");
    if (name != "db.lab") return absl::NotFoundError("no such name");
    return std::vector<std::string>{"10.77.1.22"};
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  Mode mode_ = Mode::kAnswer;
  int blocked_ = 0;
};

// Exemption sets that name their remote by DNS name.
class DnsContainmentTest : public ContainmentServerTest {
 protected:
  void configure(ServerOptions& o) override {
    ContainmentServerTest::configure(o);
    o.policies = &dns_policies_;
    o.resolver = &resolver_;
    o.names.refresh = milliseconds(100);
    o.names.poll = milliseconds(20);
  }
  void TearDown() override {
    resolver_.set(ScriptedResolver::Mode::kAnswer);  // lets the cache's thread stop
    ContainmentServerTest::TearDown();
  }
  static PolicyLibrary dnsLibrary() {
    auto lib = buildPolicyLibrary({{"db.yaml", R"(name: db-by-name
description: the database, by DNS name
selector: "*"
rules:
  - direction: out
    proto: tcp
    remote: db.lab
    port: 5432
)"}});
    EXPECT_TRUE(lib.ok()) << lib.status();
    return lib.ok() ? *lib : PolicyLibrary();
  }
  bool resolved() {
    return eventually([&] {
      auto e = server_->names().entry("db.lab");
      return e && !e->addresses.empty();
    });
  }
  // The isolation rules web host `a` is sent, after acknowledging them.
  v1::DesiredState isolateAndAck(FakeAgent& a, const std::string& host, Call* call) {
    auto f = isolateAsync(isolateReq({host}));
    v1::ControllerMessage m;
    EXPECT_TRUE(a.readUntil(v1::ControllerMessage::kDesiredState, &m));
    EXPECT_TRUE(a.report(m.desired_state().generation(), true, "hash"));
    *call = get(f);
    return m.desired_state();
  }

  ScriptedResolver resolver_;
  Policies dns_policies_{dnsLibrary()};
};

TEST_F(DnsContainmentTest, AnIsolateNeverWaitsForASlowResolver) {
  ASSERT_TRUE(resolved());
  // Every resolution from now on hangs (a DNS server that does not answer): the refresh is
  // stuck in it.
  resolver_.set(ScriptedResolver::Mode::kBlock);
  ASSERT_TRUE(eventually([&] { return resolver_.blocked() > 0; }));
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  Call c;
  const v1::DesiredState d = isolateAndAck(*a, "web-01", &c);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(c.resp.outcomes(0).state(), v1::HostOutcome::STATE_ENFORCED);
  ASSERT_EQ(d.isolation().exemptions_size(), 1);
  EXPECT_EQ(d.isolation().exemptions(0).remote_cidr(), "10.77.1.22/32");
  EXPECT_EQ(d.isolation().exemptions(0).set_name(), "db-by-name");
  EXPECT_GT(resolver_.blocked(), 0);  // done while the resolver was still hanging
  EXPECT_EQ(c.resp.warnings_size(), 0);
}

TEST_F(DnsContainmentTest, WhenTheRefreshFailsTheLastGoodAddressesAreUsedAndTheResultSaysSo) {
  ASSERT_TRUE(resolved());
  resolver_.set(ScriptedResolver::Mode::kFail);
  ASSERT_TRUE(eventually([&] {
    auto e = server_->names().entry("db.lab");
    return e && !e->last_error.empty();
  }));
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  Call c;
  const v1::DesiredState d = isolateAndAck(*a, "web-01", &c);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  ASSERT_EQ(d.isolation().exemptions_size(), 1);
  EXPECT_EQ(d.isolation().exemptions(0).remote_cidr(), "10.77.1.22/32");
  ASSERT_EQ(c.resp.warnings_size(), 1);
  EXPECT_NE(c.resp.warnings(0).find("\"db.lab\" are stale"), std::string::npos)
      << c.resp.warnings(0);
  EXPECT_NE(c.resp.warnings(0).find("Temporary failure in name resolution"), std::string::npos)
      << c.resp.warnings(0);
  bool audited = false;
  const auto rows = auditRows();
  for (const auto& r : rows) {
    if (r.action == "isolate" && r.detail.find("are stale") != std::string::npos) audited = true;
  }
  EXPECT_TRUE(audited);
}

TEST_F(DnsContainmentTest, ANameThatNeverResolvedRefusesTheIsolateNamingIt) {
  resolver_.set(ScriptedResolver::Mode::kFail);
  server_.reset();
  startServer();  // a fresh cache whose every attempt fails
  ASSERT_TRUE(eventually([&] {
    auto e = server_->names().entry("db.lab");
    return e && !e->last_error.empty();
  }));
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  auto f = isolateAsync(isolateReq({"web-01"}));
  Call c = get(f);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(c.status.error_message().find("db.lab"), std::string::npos) << c.status.error_message();
  EXPECT_NE(c.status.error_message().find("Temporary failure"), std::string::npos)
      << c.status.error_message();
  EXPECT_FALSE(status("web-01").desired().isolation().enabled());
}

class NoEndpointServerTest : public ContainmentServerTest {
 protected:
  void SetUp() override {
    endpoints_ = std::vector<v1::Endpoint>{};
    ContainmentServerTest::SetUp();
  }
};

TEST_F(NoEndpointServerTest, IsolationIsRefusedWithoutADialableEndpoint) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  auto f = isolateAsync(isolateReq({"web-01"}));
  Call c = get(f);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(c.status.error_message().find("--advertise"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::controller
