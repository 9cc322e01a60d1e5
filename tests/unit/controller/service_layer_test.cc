// The service layer (Containment, HostOperations): plain requests, a callback with the result,
// a fake fleet instead of agent streams. No gRPC: what the service decides and records, tested
// directly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <variant>

#include "controller/service/audit_trail.h"
#include "controller/service/containment.h"
#include "controller/service/host_operations.h"
#include "controller/store/sqlite_store.h"
#include "tests/unit/controller/fake_clock.h"
#include "tests/unit/controller/test_policies.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
using std::chrono::milliseconds;

// Every host online; a published state is acknowledged (ENFORCED) at once.
class FakeFleetControl final : public FleetControl {
 public:
  explicit FakeFleetControl(std::map<std::string, TargetHost> hosts) : hosts_(std::move(hosts)) {}

  void setOpReadyHandler(std::function<void(std::shared_ptr<PendingOp>)>) override {}
  void setFleetBlocksListener(std::function<void()>) override {}
  std::map<std::string, TargetHost> targets() override {
    std::lock_guard lock(mu_);
    return hosts_;
  }
  // A host joins the fleet.
  void add(const std::string& host, TargetHost target) {
    std::lock_guard lock(mu_);
    hosts_[host] = std::move(target);
  }
  std::map<std::string, v1::DesiredState> desiredStates(
      const std::vector<std::string>& hosts) override {
    std::lock_guard lock(mu_);
    std::map<std::string, v1::DesiredState> out;
    for (const auto& h : hosts) out[h] = states_.count(h) ? states_.at(h) : v1::DesiredState();
    return out;
  }
  std::map<std::string, v1::DesiredState> allDesiredStates() override {
    std::lock_guard lock(mu_);
    return states_;
  }
  bool publish(const std::shared_ptr<PendingOp>& op, const std::vector<std::string>& order,
               const std::map<std::string, v1::DesiredState>& states,
               const std::map<std::string, std::vector<std::string>>&) override {
    std::lock_guard lock(mu_);
    ++publishes_;
    for (const auto& h : order) {
      states_[h] = states.at(h);
      if (!op) continue;
      auto& o = op->result.outcomes.emplace_back();
      o.set_host_id(h);
      o.set_generation(states.at(h).generation());
      o.set_state(v1::HostOutcome::STATE_ENFORCED);
    }
    return true;
  }
  bool preview(const std::shared_ptr<PendingOp>&, const std::vector<std::string>&,
               const std::map<std::string, v1::DesiredState>&,
               const std::map<std::string, std::vector<std::string>>&) override {
    return true;
  }
  bool settle(const std::shared_ptr<PendingOp>& op, v1::HostOutcome::State,
              const std::string&) override {
    std::lock_guard lock(mu_);
    if (op->settled) return false;
    op->settled = true;
    return true;
  }
  std::vector<std::shared_ptr<PendingOp>> pendingOps() override { return {}; }
  bool known(const std::string& host) override {
    std::lock_guard lock(mu_);
    return hosts_.contains(host);
  }
  bool sendCommand(const std::string& host, v1::Command command, std::string* why) override {
    std::lock_guard lock(mu_);
    if (!hosts_.contains(host)) {
      *why = "unknown host";
      return false;
    }
    sent_.emplace_back(host, std::move(command));
    return true;
  }
  void setCommandListener(
      std::function<void(const std::string&, const v1::CommandResult&)> listener) override {
    std::lock_guard lock(mu_);
    listener_ = std::move(listener);
  }

  // The agent of `host` answers the newest command sent.
  void answer(const std::string& host, v1::CommandResult result) {
    std::lock_guard lock(mu_);
    result.set_command_id(sent_.back().second.id());
    if (listener_) listener_(host, result);
  }
  std::vector<std::pair<std::string, v1::Command>> sent() {
    std::lock_guard lock(mu_);
    return sent_;
  }

  int publishes() {
    std::lock_guard lock(mu_);
    return publishes_;
  }
  v1::DesiredState state(const std::string& host) {
    std::lock_guard lock(mu_);
    return states_[host];
  }

 private:
  std::mutex mu_;
  std::map<std::string, TargetHost> hosts_;
  std::map<std::string, v1::DesiredState> states_;
  int publishes_ = 0;
  std::vector<std::pair<std::string, v1::Command>> sent_;
  std::function<void(const std::string&, const v1::CommandResult&)> listener_;
};

class NoDns final : public NameResolver {
 public:
  absl::StatusOr<std::vector<std::string>> resolve(const std::string& name) override {
    return absl::NotFoundError(name);
  }
};

struct Answer {
  absl::Status status;
  ContainmentResult result;
};

const Caller kAlice{.audit_name = "alice", .is_operator = true, .role = Role::kResponder};
const Caller kVera{.audit_name = "vera", .is_operator = true, .role = Role::kViewer};
const Caller kBob{.audit_name = "bob", .is_operator = true, .role = Role::kViewer};

class ContainmentServiceTest : public ::testing::Test {
 protected:
  ContainmentServiceTest()
      : fleet_({{"web-01", {{{"role", "web"}}, {"10.77.1.11/16"}, true}},
                {"db-01", {{{"role", "db"}}, {"10.77.1.21/16"}, true}},
                {"acme-web", {{{"role", "web"}, {"env", "prod"}}, {"10.77.2.11/16"}, true, "acme"}},
                {"acme-dev", {{{"role", "web"}, {"env", "dev"}}, {"10.77.2.12/16"}, true, "acme"}},
                {"beta-web", {{{"role", "web"}}, {"10.77.3.11/16"}, true, "beta"}}}),
        policies_(testPolicyLibrary()) {
    char tmpl[] = "/tmp/bh-containment-service-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto store = SqliteStore::create(dir_ / "controller.db");
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    names_ = std::make_unique<NameCache>(clock_, policies_, dns_, NameCacheOptions{});
    ContainmentOptions options;
    options.endpoints.emplace_back().set_ip("10.77.0.1");
    options.endpoints.back().set_port(7443);
    options.expiry_interval = milliseconds(50);
    containment_ = std::make_unique<Containment>(clock_, *store_, fleet_, policies_, *names_,
                                                 std::move(options));
  }
  ~ContainmentServiceTest() override {
    containment_.reset();
    names_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Runs `call` with a done callback and waits for the answer.
  template <typename Call>
  Answer await(Call call) {
    auto promise = std::make_shared<std::promise<Answer>>();
    auto future = promise->get_future();
    call([promise](const absl::Status& s, ContainmentResult r) {
      promise->set_value(Answer{s, std::move(r)});
    });
    EXPECT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return future.get();
  }

  std::vector<AuditEntry> audit() {
    auto rows = store_->listAudit(100);
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.ok() ? *rows : std::vector<AuditEntry>{};
  }

  FakeClock clock_;
  FakeFleetControl fleet_;
  Policies policies_;
  NoDns dns_;
  std::filesystem::path dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<NameCache> names_;
  std::unique_ptr<Containment> containment_;
};

TEST_F(ContainmentServiceTest, IsolateCommitsAuditsPublishesAndAnswersWithTheOutcomes) {
  Answer a = await([&](ContainmentDone done) {
    containment_->isolate(kAlice, IsolateRequest{.hosts = {"web-01"}, .reason = "incident 7"},
                          std::move(done));
  });
  ASSERT_TRUE(a.status.ok()) << a.status;
  ASSERT_EQ(a.result.outcomes.size(), 1u);
  EXPECT_EQ(a.result.outcomes[0].host_id(), "web-01");
  EXPECT_EQ(a.result.outcomes[0].state(), v1::HostOutcome::STATE_ENFORCED);
  EXPECT_EQ(a.result.outcomes[0].generation(), 1u);
  EXPECT_EQ(a.result.outcomes[0].tenant(), "default");
  EXPECT_TRUE(fleet_.state("web-01").has_isolation());
  auto rows = audit();
  ASSERT_GE(rows.size(), 2u);
  EXPECT_EQ(rows[rows.size() - 2].action, "isolate");
  EXPECT_EQ(rows[rows.size() - 2].operator_name, "alice");
  EXPECT_EQ(rows[rows.size() - 2].target, "web-01");
  EXPECT_EQ(rows[rows.size() - 2].outcome, "ok");
  EXPECT_EQ(rows.back().action, "isolate.result");
}

TEST_F(ContainmentServiceTest, ARequestWithoutAReasonIsRefusedAuditedAndNothingIsPublished) {
  Answer a = await([&](ContainmentDone done) {
    containment_->isolate(kAlice, IsolateRequest{.hosts = {"web-01"}, .reason = "   "},
                          std::move(done));
  });
  EXPECT_TRUE(absl::IsInvalidArgument(a.status)) << a.status;
  EXPECT_EQ(a.status.message(), "reason: required");
  EXPECT_TRUE(a.result.outcomes.empty());
  EXPECT_EQ(fleet_.publishes(), 0);
  auto rows = audit();
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.back().action, "isolate");
  EXPECT_EQ(rows.back().outcome, "error: reason: required");
}

TEST_F(ContainmentServiceTest, ReleaseOfAnUnknownHostIsRefusedNamingIt) {
  Answer a = await([&](ContainmentDone done) {
    containment_->release(kAlice, ReleaseRequest{.hosts = {"nope-9"}, .reason = "done"},
                          std::move(done));
  });
  EXPECT_TRUE(absl::IsNotFound(a.status)) << a.status;
  EXPECT_NE(a.status.message().find("nope-9"), std::string::npos) << a.status;
  EXPECT_EQ(audit().back().action, "release");
}

TEST_F(ContainmentServiceTest, ABlockIsListedWithItsHostAndAnUnknownHostIsNotFound) {
  Answer a = await([&](ContainmentDone done) {
    containment_->block(
        kAlice,
        BlockRequest{.hosts = {"db-01"}, .remote_cidr = "203.0.113.9/32", .reason = "c2 server"},
        std::move(done));
  });
  ASSERT_TRUE(a.status.ok()) << a.status;
  ASSERT_EQ(a.result.outcomes.size(), 1u);
  EXPECT_EQ(fleet_.state("db-01").blocks_size(), 1);

  auto listed = std::make_shared<std::promise<std::pair<absl::Status, std::vector<BlockEntry>>>>();
  containment_->listBlocks(kBob, ListBlocksRequest{},
                           [listed](const absl::Status& s, std::vector<BlockEntry> b) {
                             listed->set_value({s, std::move(b)});
                           });
  auto [status, blocks] = listed->get_future().get();
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].host_id, "db-01");
  EXPECT_FALSE(blocks[0].fleet_wide);
  EXPECT_EQ(blocks[0].remaining_ms, 0);
  EXPECT_EQ(audit().back().action, "blocks");
  EXPECT_EQ(audit().back().detail, "1 blocks");

  auto unknown = std::make_shared<std::promise<absl::Status>>();
  containment_->listBlocks(
      kBob, ListBlocksRequest{.host = "nope-9"},
      [unknown](const absl::Status& s, const std::vector<BlockEntry>&) { unknown->set_value(s); });
  EXPECT_TRUE(absl::IsNotFound(unknown->get_future().get()));
}

TEST_F(ContainmentServiceTest, AfterShutdownACallIsRefusedUnavailableAndAudited) {
  containment_->shutdown();
  Answer a = await([&](ContainmentDone done) {
    containment_->isolate(kAlice, IsolateRequest{.hosts = {"web-01"}, .reason = "incident 7"},
                          std::move(done));
  });
  EXPECT_TRUE(absl::IsUnavailable(a.status)) << a.status;
  EXPECT_EQ(a.status.message(), "controller shutting down, nothing applied");
  EXPECT_EQ(audit().back().action, "isolate");
  EXPECT_EQ(audit().back().operator_name, "alice");
  EXPECT_EQ(audit().back().target, "web-01");
  EXPECT_EQ(audit().back().reason, "incident 7");
  EXPECT_EQ(fleet_.publishes(), 0);
}

TEST_F(ContainmentServiceTest, AViewersIsolateIsRefusedAuditedAndChangesNothing) {
  Answer a = await([&](ContainmentDone done) {
    containment_->isolate(kVera, IsolateRequest{.hosts = {"web-01"}, .reason = "incident 7"},
                          std::move(done));
  });
  EXPECT_TRUE(absl::IsPermissionDenied(a.status)) << a.status;
  EXPECT_TRUE(a.result.outcomes.empty());
  EXPECT_FALSE(fleet_.state("web-01").has_isolation());
  EXPECT_EQ(audit().back().action, "isolate");
  EXPECT_EQ(audit().back().operator_name, "vera");
  EXPECT_EQ(audit().back().outcome, "denied");
  EXPECT_EQ(audit().back().target, "web-01");
}

TEST_F(ContainmentServiceTest, ABlockWithABadFieldIsRefusedNamingTheFieldAndChangesNothing) {
  Answer a = await([&](ContainmentDone done) {
    containment_->block(kAlice,
                        BlockRequest{.hosts = {"web-01"},
                                     .remote_cidr = "10.77.0.66/32",
                                     .port = 70000,
                                     .reason = "c2"},
                        std::move(done));
  });
  EXPECT_TRUE(absl::IsInvalidArgument(a.status)) << a.status;
  EXPECT_EQ(a.status.message(), "port: invalid value 70000: must be between 0 and 65535");
  EXPECT_EQ(fleet_.state("web-01").blocks_size(), 0);
  EXPECT_EQ(audit().back().action, "block");
  EXPECT_EQ(audit().back().outcome,
            "error: port: invalid value 70000: must be between 0 and 65535");
}

TEST_F(ContainmentServiceTest, IsolateAndReleaseRefuseAllHostsFromAnyFrontDoor) {
  Answer isolate = await([&](ContainmentDone done) {
    containment_->isolate(kAlice, IsolateRequest{.all = true, .reason = "incident 7"},
                          std::move(done));
  });
  EXPECT_TRUE(absl::IsInvalidArgument(isolate.status)) << isolate.status;
  EXPECT_EQ(isolate.status.message(),
            "targets: all: not accepted here: name one or more hosts, or a selector");
  Answer release = await([&](ContainmentDone done) {
    containment_->release(kAlice, ReleaseRequest{.all = true, .reason = "done"}, std::move(done));
  });
  EXPECT_TRUE(absl::IsInvalidArgument(release.status)) << release.status;
  EXPECT_FALSE(fleet_.state("web-01").has_isolation());
  EXPECT_FALSE(fleet_.state("db-01").has_isolation());
  EXPECT_EQ(audit().back().action, "release");
}

// A provider's responder for tenant acme only (bindings; its certificate holds no role).
Caller acmeResponder(Labels hosts = {}) {
  return Caller{.audit_name = "ann",
                .is_operator = true,
                .role = Role::kNone,
                .grants = {Grant{.tenant = "acme", .role = Role::kResponder, .hosts = std::move(hosts)}},
                .tenants = {"acme"}};
}

TEST_F(ContainmentServiceTest, AnotherTenantsHostIsRefusedExactlyLikeAnUnknownOne) {
  Answer other = await([&](ContainmentDone done) {
    containment_->isolate(acmeResponder(),
                          IsolateRequest{.hosts = {"beta-web"}, .reason = "incident 7"},
                          std::move(done));
  });
  Answer unknown = await([&](ContainmentDone done) {
    containment_->isolate(acmeResponder(),
                          IsolateRequest{.hosts = {"nope-9"}, .reason = "incident 7"},
                          std::move(done));
  });
  EXPECT_TRUE(absl::IsNotFound(other.status)) << other.status;
  EXPECT_EQ(other.status.message(), "unknown host \"beta-web\"");
  EXPECT_EQ(unknown.status.message(), "unknown host \"nope-9\"");
  EXPECT_FALSE(fleet_.state("beta-web").has_isolation());
  EXPECT_EQ(audit().back().operator_name, "ann");  // audited, like every refusal
  // The default tenant's single team does not reach acme's hosts either.
  Answer single_team = await([&](ContainmentDone done) {
    containment_->isolate(kAlice, IsolateRequest{.hosts = {"acme-web"}, .reason = "x"},
                          std::move(done));
  });
  EXPECT_TRUE(absl::IsNotFound(single_team.status)) << single_team.status;
}

TEST_F(ContainmentServiceTest, ASelectorAndBlockAllReachOnlyTheCallersTenantAndBinding) {
  Answer isolated = await([&](ContainmentDone done) {
    containment_->isolate(acmeResponder(), IsolateRequest{.selector = "role=web", .reason = "i"},
                          std::move(done));
  });
  ASSERT_TRUE(isolated.status.ok()) << isolated.status;
  std::set<std::string> reached;
  for (const auto& o : isolated.result.outcomes) {
    reached.insert(o.host_id());
    EXPECT_EQ(o.tenant(), "acme") << o.host_id();  // every result names its tenant
  }
  EXPECT_EQ(reached, (std::set<std::string>{"acme-dev", "acme-web"}));
  EXPECT_FALSE(fleet_.state("web-01").has_isolation());
  EXPECT_FALSE(fleet_.state("beta-web").has_isolation());

  // A responder bound to env=prod blocks --all: acme's prod host only, and no tenant-wide
  // entry (its binding does not cover hosts that join later), which the answer says.
  Answer partial = await([&](ContainmentDone done) {
    containment_->block(acmeResponder({{"env", "prod"}}),
                        BlockRequest{.all = true, .remote_cidr = "203.0.113.7/32", .reason = "c2"},
                        std::move(done));
  });
  ASSERT_TRUE(partial.status.ok()) << partial.status;
  ASSERT_EQ(partial.result.outcomes.size(), 1u);
  EXPECT_EQ(partial.result.outcomes[0].host_id(), "acme-web");
  EXPECT_EQ(partial.result.outcomes[0].tenant(), "acme");
  ASSERT_EQ(partial.result.warnings.size(), 1u);
  EXPECT_NE(partial.result.warnings[0].find("every host of tenant acme"), std::string::npos);
  EXPECT_EQ(fleet_.state("acme-dev").blocks_size(), 0);

  // The tenant's responder on every host: tenant-wide, stored for acme alone.
  Answer all = await([&](ContainmentDone done) {
    containment_->block(acmeResponder(),
                        BlockRequest{.all = true, .remote_cidr = "203.0.113.9/32", .reason = "c2"},
                        std::move(done));
  });
  ASSERT_TRUE(all.status.ok()) << all.status;
  EXPECT_TRUE(all.result.warnings.empty());
  EXPECT_EQ(fleet_.state("acme-web").blocks_size(), 2);
  EXPECT_EQ(fleet_.state("acme-dev").blocks_size(), 1);
  EXPECT_EQ(fleet_.state("web-01").blocks_size(), 0);
  EXPECT_EQ(fleet_.state("beta-web").blocks_size(), 0);
  auto stored = store_->loadDesiredStates();
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->contains("@fleet:acme"));
  EXPECT_FALSE(stored->contains("@fleet"));
  const auto rows = audit();
  EXPECT_TRUE(std::any_of(rows.begin(), rows.end(), [](const AuditEntry& e) {
    return e.action == "block" && e.detail.find("tenant-wide in acme") != std::string::npos;
  }));

  // Hosts joining later: acme's gets the block, another tenant's does not.
  fleet_.add("acme-new", TargetHost{{{"role", "db"}}, {"10.77.2.13/16"}, true, "acme"});
  fleet_.add("beta-new", TargetHost{{{"role", "db"}}, {"10.77.3.13/16"}, true, "beta"});
  for (int i = 0; i < 100 && fleet_.state("acme-new").blocks_size() == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(fleet_.state("acme-new").blocks_size(), 1);
  EXPECT_EQ(fleet_.state("beta-new").blocks_size(), 0);

  // Listed for acme, each entry naming its tenant; nothing of it for the default tenant's viewer.
  auto listBlocks = [&](const Caller& caller) {
    auto listed = std::make_shared<std::promise<std::vector<BlockEntry>>>();
    containment_->listBlocks(caller, ListBlocksRequest{},
                             [listed](const absl::Status&, std::vector<BlockEntry> b) {
                               listed->set_value(std::move(b));
                             });
    return listed->get_future().get();
  };
  std::set<std::tuple<std::string, std::string, std::string>> acme_blocks;
  for (const auto& e : listBlocks(acmeResponder())) {
    acme_blocks.emplace(e.block.remote_cidr(), e.fleet_wide ? "all" : e.host_id, e.tenant);
  }
  EXPECT_EQ(acme_blocks,
            (std::set<std::tuple<std::string, std::string, std::string>>{
                {"203.0.113.7/32", "acme-web", "acme"}, {"203.0.113.9/32", "all", "acme"}}));
  EXPECT_TRUE(listBlocks(kBob).empty());
}

TEST_F(ContainmentServiceTest, AuditTrailVerifiesForAViewerAndRecordsEveryCallRefusalsToo) {
  AuditTrail trail(clock_, *store_, nullptr);
  const Caller& viewer = kVera;
  auto v = trail.verify(viewer, 0, "");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->ok);
  EXPECT_EQ(audit().back().action, "audit-verify");
  EXPECT_EQ(audit().back().operator_name, "vera");
  EXPECT_EQ(audit().back().detail.rfind("chain intact", 0), 0u) << audit().back().detail;

  EXPECT_TRUE(absl::IsInvalidArgument(trail.verify(viewer, -1, "").status()));
  EXPECT_EQ(audit().back().action, "audit-verify");

  auto exported = trail.exportFrom(viewer, 0);
  EXPECT_TRUE(absl::IsUnavailable(exported.status())) << exported.status();
  EXPECT_EQ(audit().back().action, "audit-export");
  EXPECT_EQ(audit().back().target, "since=1");

  const Caller agent{.audit_name = "agent:web-01",
                     .refusal = absl::PermissionDeniedError("not an operator")};
  EXPECT_TRUE(absl::IsPermissionDenied(trail.verify(agent, 0, "").status()));
  EXPECT_EQ(audit().back().operator_name, "agent:web-01");
  EXPECT_EQ(audit().back().outcome, "denied");
}

// Host actions: plain requests, the agent's answer through a fake fleet.
class HostOperationsTest : public ContainmentServiceTest {
 protected:
  HostOperationsTest() : actions_(clock_, fleet_, {}), ops_(clock_, *store_, fleet_, actions_) {}

  template <typename Call>
  std::pair<absl::Status, HostActionResult> await(Call call) {
    auto promise = std::make_shared<std::promise<std::pair<absl::Status, HostActionResult>>>();
    auto future = promise->get_future();
    call([promise](const absl::Status& s, HostActionResult r) {
      promise->set_value({s, std::move(r)});
    });
    EXPECT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return future.get();
  }

  HostActions actions_;
  HostOperations ops_;
};

TEST_F(HostOperationsTest, AKillIsAuditedAsAcceptedSentAndAnsweredWithTheAgentsResult) {
  auto promise = std::make_shared<std::promise<std::pair<absl::Status, HostActionResult>>>();
  ops_.killProcess(kAlice,
                   KillProcessRequest{.host = "web-01", .reason = "miner", .wait_ms = 5000},
                   [promise](const absl::Status& s, HostActionResult r) {
                     promise->set_value({s, std::move(r)});
                   });
  // Not sent: exactly one of pid, exe, user is required.
  auto [refused, nothing] = promise->get_future().get();
  EXPECT_TRUE(absl::IsInvalidArgument(refused)) << refused;
  EXPECT_TRUE(fleet_.sent().empty());
  EXPECT_EQ(audit().back().action, "kill-process");

  KillProcessRequest req{.host = "web-01", .reason = "miner", .wait_ms = 5000};
  req.match.set_pid(41);
  auto answered = std::async(std::launch::async, [&] {
    return await([&](HostActionDone done) { ops_.killProcess(kAlice, req, std::move(done)); });
  });
  for (int i = 0; i < 500 && fleet_.sent().empty(); ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(fleet_.sent().size(), 1u);
  EXPECT_EQ(fleet_.sent()[0].second.kill_process().pid(), 41);
  EXPECT_EQ(fleet_.sent()[0].second.requested_by(), "alice");
  EXPECT_EQ(audit().back().action, "kill-process");
  EXPECT_EQ(audit().back().outcome, "accepted");
  EXPECT_EQ(audit().back().detail, "pid 41");
  v1::CommandResult r;
  r.set_ok(true);
  v1::ProcessEntry& killed = *r.mutable_kill_processes()->add_killed();
  killed.set_pid(41);
  killed.set_user("bob");
  killed.set_cmdline("xmrig");
  fleet_.answer("web-01", r);
  auto [status, result] = answered.get();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(result.ok);
  EXPECT_EQ(result.host_id, "web-01");
  EXPECT_EQ(result.tenant, "default");
  EXPECT_EQ(audit().back().action, "kill-process.result");
  EXPECT_EQ(audit().back().detail, "killed 1: 41 bob (xmrig); spared 0; connections cut 0");
  ASSERT_TRUE(std::holds_alternative<v1::KillProcessesResult>(result.output));
  EXPECT_EQ(std::get<v1::KillProcessesResult>(result.output).killed(0).pid(), 41);
}

TEST_F(HostOperationsTest, ACaptureFirstKillRecordsItsCaptureAndEndsItFailedWithoutABundle) {
  KillSessionsRequest req{.host = "web-01", .reason = "intruder", .wait_ms = 5000};
  req.match.set_from_cidr("203.0.113.7/32");
  req.match.set_capture_first(true);
  req.match.mutable_capture()->set_capture_id("operator-chosen");  // replaced by the controller
  auto answered = std::async(std::launch::async, [&] {
    return await([&](HostActionDone done) { ops_.killSessions(kAlice, req, std::move(done)); });
  });
  for (int i = 0; i < 500 && fleet_.sent().empty(); ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(fleet_.sent().size(), 1u);
  const v1::Command sent = fleet_.sent()[0].second;
  EXPECT_TRUE(sent.kill_sessions().capture_first());
  const std::string id = sent.kill_sessions().capture().capture_id();
  EXPECT_EQ(id.rfind("cap-", 0), 0u) << id;
  EXPECT_NE(id.find("-web-01-"), std::string::npos) << id;
  EXPECT_EQ(sent.id(), "kill-" + id);
  EXPECT_GT(sent.kill_sessions().capture().controller_time_unix_ms(), 0);
  // Recorded before the command left, so the agent's upload of the bundle is accepted.
  auto row = store_->getCapture(id);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->state, "requested");
  EXPECT_EQ(row->requested_by, "alice");
  EXPECT_EQ(row->command_id, sent.id());
  EXPECT_EQ(audit().back().outcome, "accepted");
  EXPECT_EQ(audit().back().detail, "from 203.0.113.7/32, capture first (capture " + id + ")");

  v1::CommandResult r;
  r.set_ok(false);
  r.set_error("capture-first: no evidence stored (too slow); the processes were killed");
  v1::KillProcessesResult& k = *r.mutable_kill_processes();
  k.set_capture_id(id);
  k.set_capture_error("too slow");
  v1::ProcessEntry& killed = *k.add_killed();
  killed.set_pid(77);
  killed.set_user("mallory");
  killed.set_cmdline("bash");
  fleet_.answer("web-01", r);
  auto [status, result] = answered.get();
  EXPECT_TRUE(status.ok()) << status;  // the call went through; the agent's answer says why
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(std::get<v1::KillProcessesResult>(result.output).killed_size(), 1);
  EXPECT_EQ(store_->getCapture(id)->state, "failed");
  EXPECT_EQ(audit().back().action, "kill-sessions.result");
  EXPECT_NE(audit().back().detail.find("capture " + id + " FAILED (killed anyway): too slow"),
            std::string::npos)
      << audit().back().detail;
}

TEST_F(HostOperationsTest, AViewerCannotKillAndNothingIsSentButTheRefusalIsAudited) {
  KillSessionsRequest req{.host = "web-01", .reason = "intruder", .wait_ms = 5000};
  req.match.set_user("mallory");
  auto [status, result] =
      await([&](HostActionDone done) { ops_.killSessions(kVera, req, std::move(done)); });
  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  EXPECT_TRUE(fleet_.sent().empty());
  EXPECT_EQ(audit().back().action, "kill-sessions");
  EXPECT_EQ(audit().back().operator_name, "vera");
  EXPECT_EQ(audit().back().outcome, "denied");
}

TEST_F(HostOperationsTest, AFieldWithAControlCharacterIsRefusedBeforeTheHostIsLookedUp) {
  KillProcessRequest req{.host = "nope-9", .reason = "miner\x1b[2J", .wait_ms = 5000};
  req.match.set_pid(41);
  auto [status, result] =
      await([&](HostActionDone done) { ops_.killProcess(kAlice, req, std::move(done)); });
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_EQ(status.message().rfind("reason: invalid value", 0), 0u) << status;
  EXPECT_TRUE(fleet_.sent().empty());
  EXPECT_EQ(audit().back().action, "kill-process");
  EXPECT_EQ(audit().back().reason, "miner\\x1b[2J");
}

TEST_F(HostOperationsTest, AnUnknownHostIsNotFoundAndNothingIsSent) {
  auto [status, result] = await([&](HostActionDone done) {
    ops_.killConnections(
        kAlice,
        KillConnectionsRequest{.host = "nope-9", .remote_cidr = "10.77.0.66/32", .reason = "c2"},
        std::move(done));
  });
  EXPECT_TRUE(absl::IsNotFound(status)) << status;
  EXPECT_TRUE(fleet_.sent().empty());
  EXPECT_EQ(audit().back().action, "kill-connections");
  EXPECT_EQ(audit().back().detail, "remote 10.77.0.66/32");
}

}  // namespace
}  // namespace bulkhead::controller
