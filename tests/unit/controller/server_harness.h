// Test harness for the controller's gRPC server: a test CA, a server on 127.0.0.1:0 with a
// fake clock and a SQLite store in a temp dir, fake agents (sync client streams) and operator
// stubs. Every blocking call is bounded.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <thread>

#include "bulkhead/v1/agent.grpc.pb.h"
#include "bulkhead/v1/operator.grpc.pb.h"
#include "common/certificate.h"
#include "common/format.h"
#include "common/pki/pki.h"
#include "common/tls/tls.h"
#include "controller/rpc/server.h"
#include "controller/store/sqlite_store.h"
#include "tests/unit/controller/fake_clock.h"
#include "tests/unit/controller/faulty_store.h"

namespace bulkhead::controller::testing {

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
  const CertAndKey& ca() const { return ca_; }

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
             std::string hostname = "host", std::string address = "10.77.1.11/16",
             uint64_t enforced_generation = 0) {
    v1::AgentMessage m;
    m.mutable_hello()->set_host_id(host_id);
    m.mutable_hello()->set_hostname(hostname);
    m.mutable_hello()->add_addresses(address);
    m.mutable_hello()->set_enforced_generation(enforced_generation);
    for (auto& [k, v] : labels) (*m.mutable_hello()->mutable_labels())[k] = v;
    return stream_->Write(m);
  }
  bool heartbeat() {
    v1::AgentMessage m;
    m.mutable_heartbeat()->set_enforced_generation(0);
    return stream_->Write(m);
  }
  bool read(v1::ControllerMessage* m) { return stream_->Read(m); }
  // Hello and the Welcome that answers it.
  bool connect(const std::string& host_id, std::map<std::string, std::string> labels = {},
               std::string address = "10.77.1.11/16") {
    if (!hello(host_id, std::move(labels), host_id, std::move(address))) return false;
    v1::ControllerMessage m;
    return read(&m) && m.has_welcome();
  }
  // Reads until a message with `body` arrives (skipping others); false if the stream ends.
  bool readUntil(v1::ControllerMessage::BodyCase body, v1::ControllerMessage* m) {
    while (read(m)) {
      if (m->body_case() == body) return true;
    }
    return false;
  }
  bool report(uint64_t generation, bool ok, const std::string& hash = "h",
              uint32_t flows_cut = 0, const std::string& error = "") {
    v1::AgentMessage m;
    auto* r = m.mutable_state_report();
    r->set_generation(generation);
    r->set_ok(ok);
    r->set_enforced_generation(ok ? generation : generation - 1);
    r->set_ruleset_hash(hash);
    r->set_flows_cut(flows_cut);
    r->set_error(error);
    r->set_left_closed(!ok);
    r->add_steps()->set_name("apply");
    return stream_->Write(m);
  }
  bool write(const v1::AgentMessage& m) { return stream_->Write(m); }
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
    faults_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void openStore() {
    auto s = SqliteStore::create(dir_ / "controller.db");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  // Options for the next startServer(); tests adjust them in their own SetUp.
  virtual void configure(ServerOptions& o) { (void)o; }
  void startServer() {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.credentials = serverCredentials(controller_id_);
    o.fleet.heartbeat_interval = milliseconds(1000);
    o.fleet.heartbeat_timeout = milliseconds(3000);
    o.sweep_interval = milliseconds(50);
    o.flush_interval = milliseconds(100);
    configure(o);
    faults_ = std::make_unique<FaultyStore>(*store_);
    auto s = ControllerServer::start(clock_, *faults_, o);
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
  // A connected agent for `host`, once the fleet lists the host online.
  std::unique_ptr<FakeAgent> online(const std::string& host) {
    auto a = agent(host);
    EXPECT_TRUE(a->connect(host));
    EXPECT_TRUE(eventually([&] { return listedOnline(host); }));
    return a;
  }
  // Reads the next Command (skipping desired states).
  static v1::Command nextCommand(FakeAgent& a) {
    v1::ControllerMessage m;
    EXPECT_TRUE(a.readUntil(v1::ControllerMessage::kCommand, &m));
    return m.command();
  }
  std::vector<AuditEntry> auditRows() { return *store_->listAudit(0); }
  // From now on, inserts into `table` whose row matches `when` (SQL on NEW) fail with "disk
  // I/O error" inside their transaction, after what it wrote before them: a real rollback.
  void failInserts(const std::string& table, const std::string& when = "1") {
    ASSERT_TRUE(
        store_
            ->execForTest(fmt::format("CREATE TRIGGER fail_{0} BEFORE INSERT ON {0} WHEN {1} "
                                      "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
                                      table, when))
            .ok());
  }
  void stopFailingInserts(const std::string& table) {
    ASSERT_TRUE(store_->execForTest(fmt::format("DROP TRIGGER fail_{}", table)).ok());
  }

  fs::path dir_;
  Pki pki_;
  IdentityFiles controller_id_;
  FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<FaultyStore> faults_;  // what the server uses: store_, with armed faults
  std::unique_ptr<ControllerServer> server_;
};

}  // namespace bulkhead::controller::testing
