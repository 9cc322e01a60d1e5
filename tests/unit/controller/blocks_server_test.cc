// Blocks through the real server: Block/Unblock/ListBlocks -> desired states pushed on the
// agents' streams -> StateReport -> per-host outcome; fleet-wide blocks reaching hosts that
// connect later and surviving a controller restart; guardrails and bad input.
#include "tests/unit/controller/server_harness.h"

namespace bulkhead::controller {
namespace {

using namespace bulkhead::controller::testing;
namespace v1 = bulkhead::v1;
using std::chrono::milliseconds;

class BlocksServerTest : public ServerTest {
 protected:
  void configure(ServerOptions& o) override {
    v1::Endpoint e;
    e.set_ip("10.77.0.1");
    e.set_port(7443);
    o.containment.endpoints = {e};
    o.containment.expiry_interval = milliseconds(50);
    ProtectedCidr p;
    p.cidr = *parseCidr("t", "10.77.0.40/32");
    p.why = "jump host";
    o.containment.protected_cidrs = {p};
  }

  struct Call {
    grpc::Status status;
    v1::ContainmentResponse resp;
  };
  std::future<Call> blockAsync(v1::BlockRequest req) {
    return std::async(std::launch::async, [this, req] {
      auto stub = op(Role::kResponder, "rita");
      grpc::ClientContext ctx;
      deadline(&ctx);
      Call c;
      c.status = stub->Block(&ctx, req, &c.resp);
      return c;
    });
  }
  Call unblock(v1::UnblockRequest req) {
    auto stub = op(Role::kResponder, "rita");
    grpc::ClientContext ctx;
    deadline(&ctx);
    Call c;
    c.status = stub->Unblock(&ctx, req, &c.resp);
    return c;
  }
  static Call get(std::future<Call>& f) {
    EXPECT_EQ(f.wait_for(kWait), std::future_status::ready);
    return f.get();
  }
  v1::ListBlocksResponse list(const std::string& host = "") {
    auto stub = op(Role::kViewer, "victor");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::ListBlocksRequest req;
    req.set_host(host);
    v1::ListBlocksResponse resp;
    EXPECT_TRUE(stub->ListBlocks(&ctx, req, &resp).ok());
    return resp;
  }
  static v1::BlockRequest blockReq(const std::string& cidr) {
    v1::BlockRequest r;
    r.mutable_match()->set_remote_cidr(cidr);
    r.mutable_match()->set_protocol(v1::PROTOCOL_ANY);
    r.mutable_targets()->set_all(true);
    r.set_reason("INC-4");
    r.set_wait_ms(5000);
    return r;
  }
  // Reads desired states until one carries `blocks` blocks (bounded).
  static bool readBlocks(FakeAgent& a, int blocks, v1::DesiredState* out) {
    v1::ControllerMessage m;
    for (int i = 0; i < 20; ++i) {
      if (!a.readUntil(v1::ControllerMessage::kDesiredState, &m)) return false;
      if (m.desired_state().blocks_size() == blocks) {
        *out = m.desired_state();
        return true;
      }
    }
    return false;
  }
};

TEST_F(BlocksServerTest, FleetBlockReachesEveryHostLaterHostsAndSurvivesARestart) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  auto call = blockAsync(blockReq("10.77.0.66"));
  v1::DesiredState d;
  ASSERT_TRUE(readBlocks(*a, 1, &d));
  EXPECT_EQ(d.generation(), 1u);
  EXPECT_EQ(d.blocks(0).remote_cidr(), "10.77.0.66/32");
  EXPECT_EQ(d.blocks(0).requested_by(), "rita");
  EXPECT_EQ(d.blocks(0).reason(), "INC-4");
  EXPECT_EQ(d.blocks(0).direction(), v1::DIRECTION_BOTH);
  // "any" reaches agents as UNSPECIFIED, the form every agent version reads as any.
  EXPECT_EQ(d.blocks(0).protocol(), v1::PROTOCOL_UNSPECIFIED);
  ASSERT_EQ(d.controller_endpoints_size(), 1);
  ASSERT_TRUE(a->report(1, true, "hash-1", 2));
  Call c = get(call);
  ASSERT_TRUE(c.status.ok()) << c.status.error_message();
  ASSERT_EQ(c.resp.outcomes_size(), 1);
  EXPECT_EQ(c.resp.outcomes(0).state(), v1::HostOutcome::STATE_ENFORCED);
  EXPECT_EQ(c.resp.outcomes(0).report().flows_cut(), 2u);
  auto l = list();
  ASSERT_EQ(l.entries_size(), 1);
  EXPECT_TRUE(l.entries(0).fleet_wide());
  EXPECT_EQ(l.entries(0).remaining_ms(), 0);
  EXPECT_EQ(l.entries(0).block().protocol(), v1::PROTOCOL_ANY);   // operators see ANY

  // A host that connects later gets the fleet-wide block.
  auto b = agent("web-02");
  ASSERT_TRUE(b->connect("web-02"));
  ASSERT_TRUE(readBlocks(*b, 1, &d));
  EXPECT_EQ(d.blocks(0).remote_cidr(), "10.77.0.66/32");

  // And after a controller restart, so does the next one.
  a.reset();
  b.reset();
  server_.reset();
  store_.reset();
  openStore();
  startServer();
  EXPECT_EQ(list().entries_size(), 1);
  auto c3 = agent("web-03");
  ASSERT_TRUE(c3->connect("web-03"));
  ASSERT_TRUE(readBlocks(*c3, 1, &d));

  // A fleet-wide block is removed fleet-wide only.
  v1::UnblockRequest u;
  u.mutable_match()->set_remote_cidr("10.77.0.66");
  u.mutable_match()->set_protocol(v1::PROTOCOL_ANY);
  u.mutable_targets()->mutable_hosts()->add_ids("web-03");
  u.set_reason("done");
  Call r = unblock(u);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(r.status.error_message().find("--all"), std::string::npos);
  u.mutable_targets()->set_all(true);
  u.set_wait_ms(300);
  r = unblock(u);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_TRUE(readBlocks(*c3, 0, &d));
  EXPECT_EQ(list().entries_size(), 0);
  bool audited = false;
  for (const auto& row : auditRows()) {
    if (row.action == "block" && row.operator_name == "rita" && row.target == "all") {
      audited = row.detail.find("10.77.0.66/32") != std::string::npos;
    }
  }
  EXPECT_TRUE(audited);
}

// A block whose commit fails midway (desired states written, audit row refused): refused as a
// whole, nothing listed or sent, and the acknowledged block before it survives a restart.
TEST_F(BlocksServerTest, ABlockWhoseCommitFailsMidwayAppliesNothingAndLosesNothing) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  auto first = blockAsync(blockReq("10.77.0.66"));
  v1::DesiredState d;
  ASSERT_TRUE(readBlocks(*a, 1, &d));
  ASSERT_TRUE(a->report(1, true, "hash-1"));
  ASSERT_TRUE(get(first).status.ok());

  failInserts("audit", "NEW.action = 'block' AND NEW.outcome = 'ok'");
  auto second = blockAsync(blockReq("10.77.0.77"));
  Call failed = get(second);
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(failed.status.error_message().find("nothing applied"), std::string::npos)
      << failed.status.error_message();
  auto l = list();
  ASSERT_EQ(l.entries_size(), 1);
  EXPECT_EQ(l.entries(0).block().remote_cidr(), "10.77.0.66/32");
  EXPECT_TRUE(store_->verifyAudit()->ok);

  stopFailingInserts("audit");
  a.reset();
  server_.reset();
  store_.reset();
  openStore();
  startServer();
  l = list();
  ASSERT_EQ(l.entries_size(), 1);
  EXPECT_EQ(l.entries(0).block().remote_cidr(), "10.77.0.66/32");
  // A host joining now gets exactly the acknowledged block.
  auto b = agent("web-02");
  ASSERT_TRUE(b->connect("web-02"));
  ASSERT_TRUE(readBlocks(*b, 1, &d));
  EXPECT_EQ(d.blocks(0).remote_cidr(), "10.77.0.66/32");
}

TEST_F(BlocksServerTest, GuardrailsAndBadInputChangeNothing) {
  auto a = agent("web-01");
  ASSERT_TRUE(a->connect("web-01"));
  struct Case {
    std::string cidr;
    uint32_t port;
    std::string host;
    grpc::StatusCode code;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"127.0.0.1", 0, "", grpc::StatusCode::FAILED_PRECONDITION, "loopback"},
      {"10.77.0.1", 0, "", grpc::StatusCode::FAILED_PRECONDITION, "controller"},
      {"10.77.0.40", 0, "", grpc::StatusCode::FAILED_PRECONDITION, "jump host"},
      {"10.128.0.0/9", 0, "", grpc::StatusCode::FAILED_PRECONDITION, "--yes"},
      {"10.77.0.300", 0, "", grpc::StatusCode::INVALID_ARGUMENT, "remote_cidr"},
      {"10.77.0.66", 70000, "", grpc::StatusCode::INVALID_ARGUMENT, "port"},
      {"10.77.0.66", 0, "nosuchhost", grpc::StatusCode::NOT_FOUND, "nosuchhost"},
  };
  for (const auto& k : cases) {
    auto req = blockReq(k.cidr);
    req.mutable_match()->set_port(k.port);
    if (!k.host.empty()) req.mutable_targets()->mutable_hosts()->add_ids(k.host);
    auto f = blockAsync(req);
    Call c = get(f);
    EXPECT_EQ(c.status.error_code(), k.code) << k.cidr << ": " << c.status.error_message();
    EXPECT_NE(c.status.error_message().find(k.needle), std::string::npos)
        << k.cidr << ": " << c.status.error_message();
  }
  auto noreason = blockReq("10.77.0.66");
  noreason.set_reason(" ");
  auto f = blockAsync(noreason);
  EXPECT_EQ(get(f).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(list().entries_size(), 0);
}

}  // namespace
}  // namespace bulkhead::controller
