// The controller's gRPC server end to end over loopback mTLS: real certificates from a test
// CA, real streams, a fake clock for heartbeat timeouts.
#include <gmock/gmock.h>

#include "common/protocol_version.h"
#include "tests/unit/controller/server_harness.h"

namespace bulkhead::controller {
namespace {

using namespace bulkhead::controller::testing;
namespace v1 = bulkhead::v1;
using std::chrono::milliseconds;

TEST_F(ServerTest, AgentGetsWelcomeAndIsListedOnlineWithLabels) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->hello("web-01", {{"role", "web"}}));
  v1::ControllerMessage m;
  ASSERT_TRUE(a->read(&m));
  ASSERT_TRUE(m.has_welcome());
  EXPECT_EQ(m.welcome().host_id(), "web-01");
  EXPECT_EQ(m.welcome().heartbeat_interval_ms(), 1000u);
  EXPECT_EQ(m.welcome().controller_time_unix_ms(), clock_.nowUnixMs());
  auto list = hosts("role=web");
  ASSERT_EQ(list.hosts_size(), 1);
  EXPECT_TRUE(list.hosts(0).online());
  EXPECT_EQ(list.hosts(0).labels().at("role"), "web");
  EXPECT_EQ(list.hosts(0).addresses(0), "10.77.1.11/16");
  EXPECT_EQ(hosts("role=db").hosts_size(), 0);
  // Closing the stream takes the host offline at once.
  EXPECT_TRUE(a->finish().ok());
  EXPECT_TRUE(eventually([&] { return !listedOnline("web-01"); }));
}

TEST_F(ServerTest, ASecondControllerOnTheSamePortFailsToStartInsteadOfSharingIt) {
  auto other_store = SqliteStore::create(dir_ / "second.db");
  ASSERT_TRUE(other_store.ok()) << other_store.status();
  ServerOptions o;
  o.listen = fmt::format("127.0.0.1:{}", server_->port());
  o.credentials = serverCredentials(controller_id_);
  auto second = ControllerServer::start(clock_, **other_store, o);
  ASSERT_FALSE(second.ok()) << "a second controller shares the port";
  EXPECT_THAT(std::string(second.status().message()), ::testing::HasSubstr("--listen"));
}

TEST_F(ServerTest, EmptyHelloHostIdTakesTheCertificateName) {
  auto a = agent("web-02");
  ASSERT_TRUE(a->hello(""));
  v1::ControllerMessage m;
  ASSERT_TRUE(a->read(&m));
  EXPECT_EQ(m.welcome().host_id(), "web-02");
}

TEST_F(ServerTest, AgentCannotClaimAnotherHostsId) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->hello("db-01"));
  v1::ControllerMessage m;
  EXPECT_FALSE(a->read(&m));
  auto s = a->finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("db-01"), std::string::npos);
  EXPECT_EQ(hosts().hosts_size(), 0);
}

TEST_F(ServerTest, WelcomeCarriesTheControllersProtocolAndOlderAgentsAreWelcome) {
  // FakeAgent::hello sends no protocol: an agent from before the exchange (1.0).
  auto old_agent = agent("web-01");
  ASSERT_TRUE(old_agent->hello("web-01"));
  v1::ControllerMessage m;
  ASSERT_TRUE(old_agent->read(&m));
  ASSERT_TRUE(m.has_welcome());
  EXPECT_EQ(m.welcome().protocol().major(), kProtocolVersion.major);
  EXPECT_EQ(m.welcome().protocol().minor(), kProtocolVersion.minor);
  // A newer minor of the same major is welcome too.
  auto newer = agent("web-02");
  v1::AgentMessage hello;
  hello.mutable_hello()->set_host_id("web-02");
  hello.mutable_hello()->mutable_protocol()->set_major(kProtocolVersion.major);
  hello.mutable_hello()->mutable_protocol()->set_minor(kProtocolVersion.minor + 1);
  ASSERT_TRUE(newer->write(hello));
  ASSERT_TRUE(newer->read(&m));
  EXPECT_TRUE(m.has_welcome());
}

TEST_F(ServerTest, AgentOfAnotherMajorProtocolIsRefusedWithTheReason) {
  auto a = agent("web-01");
  v1::AgentMessage hello;
  hello.mutable_hello()->set_host_id("web-01");
  hello.mutable_hello()->set_agent_version("9.0.0");
  hello.mutable_hello()->mutable_protocol()->set_major(kProtocolVersion.major + 1);
  ASSERT_TRUE(a->write(hello));
  v1::ControllerMessage m;
  EXPECT_FALSE(a->read(&m));
  auto s = a->finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("agent web-01 (bulkhead 9.0.0) speaks protocol " +
                                   std::to_string(kProtocolVersion.major + 1) + ".0"),
            std::string::npos)
      << s.error_message();
  EXPECT_NE(s.error_message().find("upgrade this controller"), std::string::npos);
  EXPECT_EQ(hosts().hosts_size(), 0);
}

TEST_F(ServerTest, FirstMessageMustBeHello) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->heartbeat());
  auto s = a->finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(hosts().hosts_size(), 0);
}

TEST_F(ServerTest, OperatorCertificateCannotOpenTheAgentChannel) {
  FakeAgent a(channel(pki_.identity(PeerKind::kOperator, "alice", Role::kAdmin)));
  a.hello("alice");
  auto s = a.finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(hosts().hosts_size(), 0);
}

TEST_F(ServerTest, CertificateFromAnotherCaIsRefused) {
  Pki other;
  FakeAgent a(channel(other.identity(PeerKind::kAgent, "web-01")));
  a.hello("web-01");
  auto s = a.finish();
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(hosts().hosts_size(), 0);
}

TEST_F(ServerTest, SecondStreamOfTheSameHostReplacesTheFirst) {
  auto a1 = agent("web-01");
  ASSERT_TRUE(a1->hello("web-01"));
  v1::ControllerMessage m;
  ASSERT_TRUE(a1->read(&m));
  auto a2 = agent("web-01");
  ASSERT_TRUE(a2->hello("web-01"));
  ASSERT_TRUE(a2->read(&m));
  EXPECT_FALSE(a1->read(&m));
  EXPECT_EQ(a1->finish().error_code(), grpc::StatusCode::ABORTED);
  EXPECT_TRUE(listedOnline("web-01"));   // the old stream's end does not take it offline
  EXPECT_EQ(hosts().hosts_size(), 1);
}

TEST_F(ServerTest, HeartbeatTimeoutTakesTheHostOfflineAndEndsTheStream) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->hello("web-01"));
  v1::ControllerMessage m;
  ASSERT_TRUE(a->read(&m));
  clock_.advance(milliseconds(2500));
  ASSERT_TRUE(a->heartbeat());
  const int64_t heartbeat_at = clock_.nowUnixMs();
  ASSERT_TRUE(eventually([&] {   // the server has processed the heartbeat
    auto list = hosts();
    return list.hosts_size() == 1 && list.hosts(0).last_seen_unix_ms() == heartbeat_at;
  }));
  clock_.advance(milliseconds(2500));   // 2.5 s since the heartbeat: still online
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_TRUE(listedOnline("web-01"));
  clock_.advance(milliseconds(1000));   // 3.5 s: past the timeout
  EXPECT_TRUE(eventually([&] { return !listedOnline("web-01"); }));
  EXPECT_FALSE(a->read(&m));
  EXPECT_EQ(a->finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServerTest, OversizedMessageIsRefused) {
  auto a = agent("web-01");
  a->hello("web-01", {}, std::string(5 * 1024 * 1024, 'x'));
  auto s = a->finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(hosts().hosts_size(), 0);
}

TEST_F(ServerTest, AgentCertificateOnTheOperatorServiceIsRefusedAndAudited) {
  auto stub = v1::Operator::NewStub(channel(pki_.identity(PeerKind::kAgent, "web-01")));
  grpc::ClientContext ctx;
  deadline(&ctx);
  v1::ListHostsResponse resp;
  auto s = stub->ListHosts(&ctx, v1::ListHostsRequest(), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto rows = auditRows();
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.back().operator_name, "agent:web-01");
  EXPECT_EQ(rows.back().action, "hosts");
  EXPECT_EQ(rows.back().outcome, "denied");
}

TEST_F(ServerTest, ViewerMayReadButNotAct) {
  auto stub = op(Role::kViewer, "victor");
  {
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::ListHostsResponse resp;
    EXPECT_TRUE(stub->ListHosts(&ctx, v1::ListHostsRequest(), &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::IsolateRequest req;
    req.mutable_targets()->mutable_hosts()->add_ids("web-01");
    req.set_reason("INC-1");
    v1::ContainmentResponse resp;
    auto s = stub->Isolate(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  auto rows = auditRows();
  ASSERT_GE(rows.size(), 2u);
  EXPECT_EQ(rows[rows.size() - 2].operator_name, "victor");
  EXPECT_EQ(rows[rows.size() - 2].outcome, "ok");
  EXPECT_EQ(rows.back().action, "isolate");
  EXPECT_EQ(rows.back().reason, "INC-1");
  EXPECT_EQ(rows.back().outcome, "denied");
}

TEST_F(ServerTest, ReadErrorsNameTheValue) {
  auto stub = op();
  {
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::GetHostRequest req;
    req.set_host("nope-01");
    v1::HostStatus resp;
    auto s = stub->GetHost(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(s.error_message(), "unknown host \"nope-01\"");
  }
  {
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::ListHostsRequest req;
    req.set_selector("role");
    v1::ListHostsResponse resp;
    auto s = stub->ListHosts(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("selector"), std::string::npos);
    EXPECT_NE(s.error_message().find("role"), std::string::npos);
  }
  auto rows = auditRows();
  ASSERT_GE(rows.size(), 2u);
  EXPECT_EQ(rows[rows.size() - 2].action, "status");
  EXPECT_EQ(rows[rows.size() - 2].target, "nope-01");
  EXPECT_EQ(rows[rows.size() - 2].outcome.rfind("error: unknown host", 0), 0u);
}

TEST_F(ServerTest, ListAndVerifyAudit) {
  auto stub = op(Role::kViewer, "victor");
  for (int i = 0; i < 3; ++i) hosts();
  grpc::ClientContext ctx;
  deadline(&ctx);
  v1::ListAuditRequest req;
  req.set_limit(2);
  v1::ListAuditResponse resp;
  ASSERT_TRUE(stub->ListAudit(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.records_size(), 2);
  EXPECT_LT(resp.records(0).id(), resp.records(1).id());   // newest last
  EXPECT_EQ(resp.records(1).prev_hash(), resp.records(0).hash());

  grpc::ClientContext vctx;
  deadline(&vctx);
  v1::VerifyAuditResponse v;
  ASSERT_TRUE(stub->VerifyAudit(&vctx, v1::VerifyAuditRequest(), &v).ok());
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.rows(), 4);   // three hosts calls and the audit call

  ASSERT_TRUE(store_->execForTest("UPDATE audit SET operator = 'mallory' WHERE id = 2").ok());
  grpc::ClientContext v2ctx;
  deadline(&v2ctx);
  ASSERT_TRUE(stub->VerifyAudit(&v2ctx, v1::VerifyAuditRequest(), &v).ok());
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.first_bad_id(), 2);
}

TEST_F(ServerTest, RestartListsKnownHostsOfflineAndKeepsTheAudit) {
  {
    auto a = agent("web-01");
    ASSERT_TRUE(a->hello("web-01", {{"role", "web"}}));
    v1::ControllerMessage m;
    ASSERT_TRUE(a->read(&m));
    ASSERT_TRUE(listedOnline("web-01"));
    server_->shutdown();
    EXPECT_FALSE(a->read(&m));   // the stream ends with the controller
  }
  server_.reset();
  const size_t audit_before = auditRows().size();
  store_.reset();
  openStore();
  startServer();
  auto list = hosts();
  ASSERT_EQ(list.hosts_size(), 1);
  EXPECT_EQ(list.hosts(0).host_id(), "web-01");
  EXPECT_FALSE(list.hosts(0).online());
  EXPECT_EQ(list.hosts(0).labels().at("role"), "web");
  EXPECT_EQ(auditRows().size(), audit_before + 1);
  EXPECT_TRUE(store_->verifyAudit()->ok);
  // And it comes back online when it reconnects.
  auto a = agent("web-01");
  ASSERT_TRUE(a->hello("web-01", {{"role", "web"}}));
  v1::ControllerMessage m;
  ASSERT_TRUE(a->read(&m));
  EXPECT_TRUE(listedOnline("web-01"));
}

}  // namespace
}  // namespace bulkhead::controller
