// The controller's gRPC server end to end over loopback mTLS: real certificates from a test
// CA, real streams, a fake clock for heartbeat timeouts.
#include "controller/rpc/server.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "bulkhead/v1/agent.grpc.pb.h"
#include "bulkhead/v1/operator.grpc.pb.h"
#include "common/format.h"
#include "common/pki.h"
#include "common/tls.h"
#include "controller/store/sqlite_store.h"
#include "tests/unit/controller/fake_clock.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;
namespace v1 = bulkhead::v1;
using std::chrono::milliseconds;

constexpr auto kWait = std::chrono::seconds(10);   // bound on every blocking call

class Pki {
 public:
  Pki() : ca_(*createCa("test-ca", std::chrono::hours(24))) {}
  IdentityFiles identity(PeerKind kind, const std::string& name, Role role = Role::kViewer) {
    CertRequest r{.kind = kind, .name = name, .role = role};
    if (kind == PeerKind::kController) r.ip_addresses = {"127.0.0.1"};
    auto c = issueCert(ca_, r);
    EXPECT_TRUE(c.ok()) << c.status();
    IdentityFiles id;
    id.ca_pem = ca_.cert_pem;
    id.cert_pem = c->cert_pem;
    id.key_pem = c->key_pem;
    id.self = *identityFromCertPem(c->cert_pem);
    return id;
  }

 private:
  CertAndKey ca_;
};

// Polls `pred` until it holds or `kWait` passes.
template <typename Pred>
bool eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + kWait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

class FakeAgent {
 public:
  FakeAgent(const std::shared_ptr<grpc::Channel>& channel) : stub_(v1::AgentChannel::NewStub(channel)) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stream_ = stub_->Connect(&ctx_);
  }
  bool hello(const std::string& host_id, std::map<std::string, std::string> labels = {},
             std::string hostname = "host") {
    v1::AgentMessage m;
    m.mutable_hello()->set_host_id(host_id);
    m.mutable_hello()->set_hostname(hostname);
    m.mutable_hello()->add_addresses("10.77.1.11/16");
    for (auto& [k, v] : labels) (*m.mutable_hello()->mutable_labels())[k] = v;
    return stream_->Write(m);
  }
  bool heartbeat() {
    v1::AgentMessage m;
    m.mutable_heartbeat()->set_enforced_generation(0);
    return stream_->Write(m);
  }
  bool read(v1::ControllerMessage* m) { return stream_->Read(m); }
  grpc::Status finish() {
    stream_->WritesDone();
    v1::ControllerMessage m;
    while (stream_->Read(&m)) {
    }
    return stream_->Finish();
  }
  grpc::ClientContext& ctx() { return ctx_; }

 private:
  std::unique_ptr<v1::AgentChannel::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream_;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-server-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    controller_id_ = pki_.identity(PeerKind::kController, "controller");
    openStore();
    startServer();
  }
  void TearDown() override {
    server_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void openStore() {
    auto s = SqliteStore::create(dir_ / "controller.db");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  void startServer() {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.credentials = serverCredentials(controller_id_);
    o.fleet.heartbeat_interval = milliseconds(1000);
    o.fleet.heartbeat_timeout = milliseconds(3000);
    o.sweep_interval = milliseconds(50);
    o.flush_interval = milliseconds(100);
    auto s = ControllerServer::start(clock_, *store_, o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
  }
  std::shared_ptr<grpc::Channel> channel(const IdentityFiles& id) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("controller");
    return grpc::CreateCustomChannel(fmt::format("127.0.0.1:{}", server_->port()),
                                     clientCredentials(id), args);
  }
  std::unique_ptr<v1::Operator::Stub> op(Role role = Role::kAdmin, const std::string& name = "alice") {
    return v1::Operator::NewStub(channel(pki_.identity(PeerKind::kOperator, name, role)));
  }
  static void deadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + kWait);
  }
  v1::ListHostsResponse hosts(const std::string& selector = "") {
    auto stub = op(Role::kViewer, "viewer");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::ListHostsRequest req;
    req.set_selector(selector);
    v1::ListHostsResponse resp;
    auto s = stub->ListHosts(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  bool listedOnline(const std::string& host) {
    auto list = hosts();
    for (const auto& h : list.hosts()) {
      if (h.host_id() == host) return h.online();
    }
    return false;
  }
  std::unique_ptr<FakeAgent> agent(const std::string& cert_name) {
    return std::make_unique<FakeAgent>(channel(pki_.identity(PeerKind::kAgent, cert_name)));
  }
  std::vector<AuditEntry> auditRows() { return *store_->listAudit(0); }

  fs::path dir_;
  Pki pki_;
  IdentityFiles controller_id_;
  FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<ControllerServer> server_;
};

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
    req.add_hosts("web-01");
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
