// The Fleet of a controller serving one database with others (FleetOptions::replica): what it
// does with the other controllers' events and what it sends them. The link is a fake that keeps
// what is sent; events from "c" are made here as c's Fleet would send them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "controller/rpc/fleet.h"
#include "controller/store/sqlite_store.h"
#include "fake_clock.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
namespace fs = std::filesystem;

class RecordingLink final : public ReplicaLink {
 public:
  void send(std::string payload) override { sent.push_back(std::move(payload)); }
  // The events sent, decoded.
  std::vector<v1::ReplicaEvent> events() const {
    std::vector<v1::ReplicaEvent> out;
    for (const auto& p : sent) {
      std::string bytes;
      EXPECT_TRUE(absl::Base64Unescape(p, &bytes));
      EXPECT_LT(p.size(), 7000u);
      EXPECT_TRUE(out.emplace_back().ParseFromString(bytes));
    }
    return out;
  }
  std::vector<std::string> sent;
};

std::string encoded(const v1::ReplicaEvent& e) { return absl::Base64Escape(e.SerializeAsString()); }

v1::ReplicaEvent fromC() {
  v1::ReplicaEvent e;
  e.set_replica("c");
  return e;
}

class ReplicaFleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-replica-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = SqliteStore::create(dir_ / "controller.db");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    fleet_ = std::make_unique<Fleet>(clock_, *store_, FleetOptions{.replica = "a", .link = &link_});
    ASSERT_TRUE(fleet_->restore().ok());
    fleet_->setOpReadyHandler(
        [this](std::shared_ptr<PendingOp> op) { ready_.push_back(std::move(op)); });
  }
  void TearDown() override {
    fleet_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // c says web-01's agent streams to it now.
  void upAtC(uint64_t enforced = 0) {
    v1::ReplicaEvent e = fromC();
    v1::HostSummary* h = e.mutable_up()->add_hosts();
    h->set_host_id("web-01");
    h->set_hostname("web-01.example");
    h->set_tenant("default");
    (*h->mutable_labels())["role"] = "web";
    h->set_enforced_generation(enforced);
    fleet_->onReplicaEvent(encoded(e));
  }

  std::shared_ptr<PendingOp> isolate(uint64_t generation) {
    auto op = std::make_shared<PendingOp>();
    op->id = generation;
    v1::DesiredState s;
    s.set_generation(generation);
    s.mutable_isolation()->set_enabled(true);
    op->waiting = 0;
    done_ = fleet_->publish(op, {"web-01"}, {{"web-01", s}}, {});
    return op;
  }

  FakeClock clock_;
  fs::path dir_;
  std::unique_ptr<SqliteStore> store_;
  RecordingLink link_;
  std::unique_ptr<Fleet> fleet_;
  std::vector<std::shared_ptr<PendingOp>> ready_;
  bool done_ = false;
};

TEST_F(ReplicaFleetTest, AHostStreamingToAnotherControllerIsListedOnlineWithItsLabels) {
  EXPECT_TRUE(fleet_->targets().empty());
  upAtC();
  auto targets = fleet_->targets();
  ASSERT_EQ(targets.count("web-01"), 1u);
  EXPECT_TRUE(targets.at("web-01").online);
  EXPECT_EQ(targets.at("web-01").labels.at("role"), "web");
  EXPECT_TRUE(fleet_->online("web-01"));
  auto hosts = fleet_->listHosts({});
  ASSERT_EQ(hosts.size(), 1u);
  EXPECT_EQ(hosts[0].hostname(), "web-01.example");
  // c says it no longer holds it: offline.
  v1::ReplicaEvent down = fromC();
  down.mutable_down()->add_hosts()->set_host_id("web-01");
  fleet_->onReplicaEvent(encoded(down));
  EXPECT_FALSE(fleet_->online("web-01"));
}

// A change for a host on c waits for c's relayed acknowledgement and is answered by it.
TEST_F(ReplicaFleetTest, AChangeWaitsForTheAcknowledgementRelayedByTheHostsController) {
  upAtC();
  auto op = isolate(1);
  EXPECT_FALSE(done_);
  ASSERT_EQ(op->result.outcomes.size(), 1u);
  EXPECT_EQ(op->result.outcomes[0].state(), v1::HostOutcome::STATE_PENDING);
  EXPECT_TRUE(op->result.outcomes[0].error().empty());
  // An acknowledgement of an older generation answers nothing.
  v1::ReplicaEvent old = fromC();
  old.mutable_ack()->set_host_id("web-01");
  old.mutable_ack()->set_enforced_generation(0);
  fleet_->onReplicaEvent(encoded(old));
  EXPECT_TRUE(ready_.empty());
  v1::ReplicaEvent ack = fromC();
  ack.mutable_ack()->set_host_id("web-01");
  v1::StateReport* r = ack.mutable_ack()->mutable_report();
  r->set_generation(1);
  r->set_ok(true);
  r->set_enforced_generation(1);
  fleet_->onReplicaEvent(encoded(ack));
  ASSERT_EQ(ready_.size(), 1u);
  EXPECT_EQ(ready_[0], op);
  EXPECT_EQ(op->result.outcomes[0].state(), v1::HostOutcome::STATE_ENFORCED);
  // A later change the agent already acknowledged (heard before the call waited) answers at once.
  ack.mutable_ack()->mutable_report()->set_generation(2);
  ack.mutable_ack()->mutable_report()->set_enforced_generation(2);
  fleet_->onReplicaEvent(encoded(ack));
  auto second = isolate(2);
  EXPECT_TRUE(done_);
  EXPECT_EQ(second->result.outcomes[0].state(), v1::HostOutcome::STATE_ENFORCED);
}

// A host no controller holds is offline: the change waits for its agent's reconnect.
TEST_F(ReplicaFleetTest, AHostOfAControllerNotHeardFromIsOfflineAfterTheTimeout) {
  upAtC();
  clock_.advance(std::chrono::seconds(5));
  fleet_->replicaTick();
  EXPECT_TRUE(fleet_->online("web-01"));
  clock_.advance(std::chrono::seconds(2));
  fleet_->replicaTick();
  EXPECT_FALSE(fleet_->online("web-01"));
  auto op = isolate(1);
  EXPECT_TRUE(done_);
  EXPECT_NE(op->result.outcomes[0].error().find("host offline"), std::string::npos);
  // Its own tick told the others it serves.
  bool alive = false;
  for (const auto& e : link_.events()) alive = alive || (e.has_alive() && e.replica() == "a");
  EXPECT_TRUE(alive);
}

// A controller forgotten after the timeout (stalled, or its notices delayed: not dead) that
// speaks again is asked, once, where hosts stream; its answer makes its hosts online again
// without their agents reconnecting.
TEST_F(ReplicaFleetTest, AControllerHeardFromAgainAfterTheTimeoutIsAskedForItsStreams) {
  upAtC();
  clock_.advance(std::chrono::seconds(7));
  fleet_->replicaTick();
  ASSERT_FALSE(fleet_->online("web-01"));
  auto syncs = [this] {
    int n = 0;
    for (const auto& e : link_.events()) n += e.has_sync() && e.replica() == "a" ? 1 : 0;
    return n;
  };
  link_.sent.clear();
  v1::ReplicaEvent alive = fromC();
  alive.mutable_alive();
  fleet_->onReplicaEvent(encoded(alive));
  EXPECT_EQ(syncs(), 1);
  upAtC();  // c's answer to the sync
  EXPECT_TRUE(fleet_->online("web-01"));
  link_.sent.clear();
  fleet_->onReplicaEvent(encoded(alive));
  EXPECT_EQ(syncs(), 0) << "asked again although c was never forgotten since";
}

// A one-shot command for a host on c goes on the link; c's relayed result reaches the command
// listener. Events from this controller itself are ignored.
TEST_F(ReplicaFleetTest, ACommandIsRelayedAndItsResultComesBack) {
  upAtC();
  std::vector<std::string> results;
  fleet_->setCommandListener([&results](const std::string& host, const v1::CommandResult& r) {
    results.push_back(host + " " + r.command_id());
  });
  v1::Command cmd;
  cmd.set_id("cmd-7");
  cmd.set_reason(std::string(9000, 'r'));  // larger than one notice: sent in pieces
  std::string why;
  ASSERT_TRUE(fleet_->sendCommand("web-01", cmd, &why)) << why;
  auto sent = link_.events();
  ASSERT_GE(sent.size(), 2u);
  // The pieces put together are the command.
  ReplicaAssembler assembler(100);
  std::optional<std::string> whole;
  for (const auto& e : sent) {
    ASSERT_TRUE(e.has_part());
    whole = assembler.add(e.replica(), e.part());
  }
  ASSERT_TRUE(whole.has_value());
  v1::ReplicaEvent relayed;
  ASSERT_TRUE(relayed.ParseFromString(*whole));
  EXPECT_EQ(relayed.command().host_id(), "web-01");
  EXPECT_EQ(relayed.command().command().id(), "cmd-7");

  v1::ReplicaEvent mine = relayed;  // an event of "a" itself: ignored
  mine.clear_command();
  mine.mutable_result()->set_host_id("web-01");
  mine.mutable_result()->mutable_result()->set_command_id("cmd-7");
  fleet_->onReplicaEvent(encoded(mine));
  EXPECT_TRUE(results.empty());
  v1::ReplicaEvent result = fromC();
  result.mutable_result()->set_host_id("web-01");
  result.mutable_result()->mutable_result()->set_command_id("cmd-7");
  fleet_->onReplicaEvent(encoded(result));
  EXPECT_EQ(results, std::vector<std::string>{"web-01 cmd-7"});
  // Garbage on the link is ignored.
  fleet_->onReplicaEvent("not base64 !!");
  // A host no controller holds: refused with the reason.
  EXPECT_FALSE(fleet_->sendCommand("db-09", cmd, &why));
  EXPECT_NE(why.find("offline"), std::string::npos);
}

// Another controller's change notice: the states are read from the store; this controller's
// own notices, and states not newer than what it holds, change nothing.
TEST_F(ReplicaFleetTest, AChangeNoticeReadsTheNewerStateFromTheStore) {
  v1::DesiredState s;
  s.set_generation(3);
  s.mutable_isolation()->set_enabled(true);
  AuditEntry e{.at_unix_ms = 1,
               .operator_name = "alice",
               .action = "isolate",
               .target = "web-01",
               .outcome = "ok"};
  ASSERT_TRUE(store_->commitChange({{"web-01", s}}, e).ok());
  fleet_->onDesiredChanged("a web-01");  // its own: ignored
  EXPECT_EQ(fleet_->desiredStates({"web-01"}).at("web-01").generation(), 0u);
  fleet_->onDesiredChanged("c web-01");
  EXPECT_EQ(fleet_->desiredStates({"web-01"}).at("web-01").generation(), 3u);
  EXPECT_TRUE(fleet_->desiredStates({"web-01"}).at("web-01").isolation().enabled());
}

}  // namespace
}  // namespace bulkhead::controller
