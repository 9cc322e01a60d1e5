// The reconcile loop against FakeFirewall / FakeFlowKiller and a fake clock.
#include "agent/daemon/reconciler.h"

#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <filesystem>
#include <limits>
#include <mutex>
#include <system_error>
#include <thread>

#include <gtest/gtest.h>

#include "agent/core/ruleset.h"
#include "agent/daemon/controller_pin.h"
#include "agent/daemon/kill_connections.h"
#include "agent/daemon/state_file.h"
#include "agent/linux/ruleset_hash.h"
#include "common/tls/tls.h"
#include "fake_enforcement.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kNow = 1'700'000'000'000;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/bulkhead-reconcile-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

Flow tcp(const char* local, uint16_t lport, const char* remote, uint16_t rport) {
  Flow f;
  f.family = AF_INET;
  f.proto = FlowProto::kTcp;
  inet_pton(AF_INET, local, f.local_addr.data());
  inet_pton(AF_INET, remote, f.remote_addr.data());
  f.local_port = lport;
  f.remote_port = rport;
  return f;
}

v1::Endpoint endpoint(const char* ip, uint32_t port) {
  v1::Endpoint e;
  e.set_ip(ip);
  e.set_port(port);
  return e;
}

// Isolated, keeping 10.77.0.50:5432 (out) and the controller 10.77.0.2:7443.
v1::DesiredState isolated(uint64_t gen, int64_t expires_at = 0) {
  v1::DesiredState s;
  s.set_generation(gen);
  *s.add_controller_endpoints() = endpoint("10.77.0.2", 7443);
  auto* iso = s.mutable_isolation();
  iso->set_enabled(true);
  iso->set_expires_at_unix_ms(expires_at);
  iso->add_exemption_sets("postgres-replication");
  auto* r = iso->add_exemptions();
  r->set_direction(v1::DIRECTION_OUT);
  r->set_protocol(v1::PROTOCOL_TCP);
  r->set_remote_cidr("10.77.0.50/32");
  r->mutable_ports()->set_first(5432);
  r->mutable_ports()->set_last(5432);
  r->set_set_name("postgres-replication");
  return s;
}

v1::DesiredState released(uint64_t gen) {
  v1::DesiredState s;
  s.set_generation(gen);
  *s.add_controller_endpoints() = endpoint("10.77.0.2", 7443);
  return s;
}

class ReconcilerTest : public ::testing::Test {
 protected:
  ReconcilerTest() {
    killer_.flows = {
        tcp("10.77.1.11", 22, "10.77.0.66", 51234),     // attacker SSH: cut
        tcp("10.77.1.11", 40000, "10.77.0.50", 5432),   // exempt replication: kept
        tcp("10.77.1.11", 40001, "10.77.0.2", 7443),    // controller channel: kept
        tcp("10.77.1.11", 40002, "10.77.0.9", 7443),    // pinned controller IP: kept
    };
  }
  std::unique_ptr<Reconciler> make(absl::Status allowed = absl::OkStatus()) {
    return std::make_unique<Reconciler>(
        ReconcilerOptions{dir_.path(), {endpoint("10.77.0.9", 7443)}, allowed}, &fw_, &killer_,
        [this] { return now_; });
  }
  static bool hasStep(const v1::StateReport& r, const std::string& name, bool ok = true) {
    for (const auto& s : r.steps()) {
      if (s.name() == name) return s.ok() == ok;
    }
    return false;
  }

  TempDir dir_;
  FakeFirewall fw_;
  FakeFlowKiller killer_;
  int64_t now_ = kNow;
};

TEST_F(ReconcilerTest, IsolatePersistsAppliesReadsBackAndCuts) {
  auto rec = make();
  auto r = rec->apply(isolated(5));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.generation(), 5u);
  EXPECT_EQ(r.enforced_generation(), 5u);
  EXPECT_EQ(r.ruleset_hash(), rulesetHash("read back: " + fw_.table));
  EXPECT_EQ(r.flows_cut(), 1u);   // only the attacker's session
  ASSERT_EQ(killer_.flows.size(), 3u);
  EXPECT_EQ(killer_.flows[0].remote_port, 5432);
  EXPECT_FALSE(killer_.last_dry_run);
  EXPECT_EQ(fw_.applies, 1);
  // The pinned controller IP is in the ruleset even though the controller did not list it.
  EXPECT_NE(fw_.table.find("10.77.0.9"), std::string::npos);
  EXPECT_NE(fw_.table.find("10.77.0.2"), std::string::npos);
  for (const char* step : {"persist", "validate", "render", "apply", "read back", "cut flows"}) {
    EXPECT_TRUE(hasStep(r, step)) << step;
  }
  EXPECT_EQ(r.steps(0).name(), "persist");
  auto persisted = loadDesiredState(dir_.path());
  ASSERT_TRUE(persisted.ok() && persisted->has_value());
  EXPECT_EQ((*persisted)->generation(), 5u);
  EXPECT_TRUE(rec->state().isolated);
  EXPECT_EQ(rec->state().exemption_sets, std::vector<std::string>{"postgres-replication"});
}

TEST_F(ReconcilerTest, RejectedRulesetKeepsThePreviousOne) {
  auto rec = make();
  ASSERT_TRUE(rec->apply(isolated(5)).ok());
  const std::string before = fw_.table;
  fw_.check_error = absl::InvalidArgumentError("syntax error");
  auto changed = isolated(6);
  changed.mutable_isolation()->mutable_exemptions(0)->set_remote_cidr("10.77.0.51/32");
  auto r = rec->apply(changed);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("syntax error"), std::string::npos);
  EXPECT_NE(r.error().find("previous one kept"), std::string::npos);
  EXPECT_TRUE(hasStep(r, "apply", false));
  EXPECT_FALSE(hasStep(r, "read back"));
  EXPECT_EQ(fw_.table, before);
  EXPECT_EQ(r.enforced_generation(), 5u);
  EXPECT_TRUE(r.left_closed());
}

TEST_F(ReconcilerTest, FailedApplyReportsLeftClosedWhenIsolated) {
  auto rec = make();
  ASSERT_TRUE(rec->apply(isolated(5)).ok());
  fw_.apply_error = absl::InternalError("netlink: Operation not permitted");
  auto r = rec->apply(isolated(6));
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.left_closed());
  EXPECT_EQ(r.generation(), 6u);
  EXPECT_EQ(r.enforced_generation(), 5u);
  EXPECT_EQ(rec->state().enforced_generation, 5u);
}

TEST_F(ReconcilerTest, ReleaseWithoutBlocksRemovesTheTable) {
  auto rec = make();
  ASSERT_TRUE(rec->apply(isolated(5)).ok());
  auto r = rec->apply(released(6));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_FALSE(fw_.present);
  EXPECT_EQ(fw_.removes, 1);
  EXPECT_EQ(r.ruleset_hash(), "");
  EXPECT_EQ(r.enforced_generation(), 6u);
  EXPECT_EQ(r.flows_cut(), 0u);
  EXPECT_FALSE(rec->state().isolated);
  EXPECT_EQ(killer_.flows.size(), 3u);   // nothing more cut on release
}

TEST_F(ReconcilerTest, OlderGenerationIsRefusedAndInvalidIsNotPersisted) {
  auto rec = make();
  ASSERT_TRUE(rec->apply(isolated(5)).ok());
  auto old = rec->apply(released(4));
  EXPECT_FALSE(old.ok());
  EXPECT_NE(old.error().find("older"), std::string::npos);
  EXPECT_TRUE(fw_.present);
  auto bad = isolated(6);
  bad.mutable_isolation()->mutable_exemptions(0)->set_remote_cidr("10.77.0.500/32");
  auto r = rec->apply(bad);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("10.77.0.500"), std::string::npos);
  EXPECT_EQ((*loadDesiredState(dir_.path()))->generation(), 5u);   // still the good one
  EXPECT_EQ(rec->state().enforced_generation, 5u);
}

TEST_F(ReconcilerTest, RestoreAppliesThePersistedStateBeforeAnyController) {
  ASSERT_TRUE(persistDesiredState(dir_.path(), isolated(9)).ok());
  auto rec = make();
  auto r = rec->restore();
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok()) << r->error();
  EXPECT_EQ(r->enforced_generation(), 9u);
  EXPECT_TRUE(fw_.present);
  EXPECT_TRUE(rec->state().isolated);
}

TEST_F(ReconcilerTest, NoPersistedStateTouchesNothing) {
  auto rec = make();
  EXPECT_FALSE(rec->restore().has_value());
  EXPECT_EQ(fw_.applies + fw_.removes + fw_.checks, 0);
  EXPECT_FALSE(rec->recheck("backstop").has_value());
}

TEST_F(ReconcilerTest, UnreadableStateFailsClosedToControllerOnly) {
  ASSERT_TRUE(writeFileAtomic(desiredStatePath(dir_.path()), "\xff\xff garbage", 0600).ok());
  auto rec = make();
  auto r = rec->restore();
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->ok());            // reported as a failure: the real state is unknown
  EXPECT_TRUE(r->left_closed());
  EXPECT_NE(r->error().find("failed closed"), std::string::npos);
  EXPECT_TRUE(fw_.present);
  EXPECT_TRUE(rec->state().isolated);
  EXPECT_TRUE(rec->state().fail_closed);
  EXPECT_NE(fw_.table.find("10.77.0.9"), std::string::npos);   // the pinned controller is kept
  EXPECT_EQ(killer_.flows.size(), 1u);                         // only the controller flow survives
  // The controller's state then replaces the fail-closed isolation.
  auto next = rec->apply(released(3));
  EXPECT_TRUE(next.ok()) << next.error();
  EXPECT_FALSE(rec->state().fail_closed);
  EXPECT_FALSE(fw_.present);
}

TEST_F(ReconcilerTest, TtlReleasesLocallyWhenItExpires) {
  auto rec = make();
  ASSERT_TRUE(rec->apply(isolated(5, kNow + 60'000)).ok());
  EXPECT_EQ(rec->nextDeadline(), kNow + 60'000);
  now_ = kNow + 59'999;
  EXPECT_FALSE(rec->tick().has_value());
  EXPECT_TRUE(fw_.present);
  now_ = kNow + 60'000;
  auto r = rec->tick();
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->ok()) << r->error();
  EXPECT_EQ(r->enforced_generation(), 5u);
  EXPECT_FALSE(fw_.present);
  EXPECT_FALSE(rec->state().isolated);
  EXPECT_EQ(rec->nextDeadline(), 0);
  EXPECT_FALSE(rec->tick().has_value());
}

TEST_F(ReconcilerTest, ExpiredTtlIsNotReappliedOnRestore) {
  ASSERT_TRUE(persistDesiredState(dir_.path(), isolated(5, kNow - 1)).ok());
  auto rec = make();
  auto r = rec->restore();
  ASSERT_TRUE(r.has_value() && r->ok());
  EXPECT_FALSE(fw_.present);
  EXPECT_FALSE(rec->state().isolated);
}

TEST_F(ReconcilerTest, TamperIsDetectedAndRestored) {
  auto rec = make();
  ASSERT_TRUE(rec->apply(isolated(5)).ok());
  std::string hash = rec->state().ruleset_hash;
  EXPECT_FALSE(rec->recheck("NEWGEN").has_value());   // our own apply: no tamper
  fw_.tamperDelete();
  killer_.flows.push_back(tcp("10.77.1.11", 22, "10.77.0.66", 51300));   // attacker came back
  auto e = rec->recheck("DELTABLE by nft (pid 42)");
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->restored());
  EXPECT_NE(e->what().find("deleted"), std::string::npos);
  EXPECT_NE(e->what().find("nft (pid 42)"), std::string::npos);
  EXPECT_EQ(e->at_unix_ms(), kNow);
  EXPECT_TRUE(fw_.present);
  EXPECT_EQ(rec->state().ruleset_hash, hash);
  EXPECT_EQ(killer_.flows.size(), 3u);   // the new attacker session was cut again
  // Edited (not deleted) table.
  fw_.table += "\n# someone's rule";
  auto e2 = rec->recheck("");
  ASSERT_TRUE(e2.has_value());
  EXPECT_NE(e2->what().find("changed"), std::string::npos);
  EXPECT_EQ(rec->state().ruleset_hash, hash);
}

TEST_F(ReconcilerTest, TableAppearingAfterReleaseIsRemoved) {
  auto rec = make();
  ASSERT_TRUE(rec->apply(released(2)).ok());
  fw_.present = true;
  fw_.table = "table inet bulkhead {}";
  auto e = rec->recheck("NEWTABLE");
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->what().find("appeared"), std::string::npos);
  EXPECT_FALSE(fw_.present);
}

TEST_F(ReconcilerTest, PreviewChangesNothing) {
  auto rec = make();
  auto cr = rec->preview("cmd-1", isolated(5));
  ASSERT_TRUE(cr.ok()) << cr.error();
  EXPECT_EQ(cr.command_id(), "cmd-1");
  EXPECT_TRUE(killer_.last_dry_run);
  EXPECT_EQ(fw_.applies, 0);
  EXPECT_EQ(fw_.checks, 1);   // the kernel dry run only
  EXPECT_FALSE(fw_.present);
  EXPECT_EQ(killer_.flows.size(), 4u);
  ASSERT_EQ(cr.preview().would_cut_size(), 1);
  EXPECT_EQ(cr.preview().would_cut(0).remote_ip(), "10.77.0.66");
  EXPECT_EQ(cr.preview().would_cut(0).remote_port(), 51234u);
  EXPECT_EQ(cr.preview().would_cut(0).protocol(), v1::PROTOCOL_TCP);
  EXPECT_EQ(cr.preview().would_keep_size(), 3);
  EXPECT_NE(cr.preview().ruleset_text().find("table inet bulkhead"), std::string::npos);
  EXPECT_FALSE(loadDesiredState(dir_.path())->has_value());
}

TEST_F(ReconcilerTest, RefusedEnforcementTouchesNothing) {
  auto rec = make(absl::FailedPreconditionError("refusing to enforce: initial netns"));
  auto r = rec->apply(isolated(5));
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("refusing"), std::string::npos);
  EXPECT_FALSE(r.left_closed());
  EXPECT_EQ(fw_.checks + fw_.applies + fw_.removes + fw_.reads, 0);
  EXPECT_EQ(killer_.calls, 0);
  EXPECT_FALSE(rec->preview("c", isolated(5)).ok());
  EXPECT_EQ(killer_.calls, 0);
}

TEST_F(ReconcilerTest, CutFailureIsReportedWithTheRulesetInForce) {
  auto rec = make();
  killer_.error = absl::UnavailableError("no flow could be enumerated");
  auto r = rec->apply(isolated(5));
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.left_closed());
  EXPECT_EQ(r.enforced_generation(), 5u);
  EXPECT_NE(r.error().find("not cut"), std::string::npos);
  EXPECT_TRUE(fw_.present);
}

// Both wait (boundedly) until the other has started: run one after the other, the first
// would give up waiting and the test fails.
TEST_F(ReconcilerTest, FlowsAreCutWhileTheTableIsReadBack) {
  std::mutex mu;
  std::condition_variable cv;
  bool reading = false;
  bool cutting = false;
  bool read_saw_cut = false;
  bool cut_saw_read = false;
  auto meet = [&](bool* mine, const bool* other, bool* saw) {
    std::unique_lock<std::mutex> lock(mu);
    *mine = true;
    cv.notify_all();
    *saw = cv.wait_for(lock, std::chrono::seconds(2), [&] { return *other; });
  };
  fw_.on_read_back = [&] { meet(&reading, &cutting, &read_saw_cut); };
  killer_.on_cut = [&] { meet(&cutting, &reading, &cut_saw_read); };
  auto rec = make();
  auto r = rec->apply(isolated(5));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(read_saw_cut);
  EXPECT_TRUE(cut_saw_read);
  EXPECT_EQ(r.flows_cut(), 1u);
  std::vector<std::string> names;
  for (const auto& s : r.steps()) names.push_back(s.name());
  EXPECT_EQ(names, (std::vector<std::string>{"persist", "validate", "render", "apply",
                                              "read back", "cut flows"}));
}

TEST_F(ReconcilerTest, AFailedReadBackIsReportedWithTheFlowsTheNewTableCut) {
  auto rec = make();
  fw_.read_error = absl::InternalError("netlink dump interrupted");
  auto r = rec->apply(isolated(5));
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("not read back"), std::string::npos) << r.error();
  EXPECT_EQ(r.enforced_generation(), 0u);
  EXPECT_TRUE(hasStep(r, "cut flows"));
  EXPECT_EQ(r.flows_cut(), 1u);
  EXPECT_EQ(killer_.flows.size(), 3u);
}

// A host out of processes (a fork bomb) refuses the agent new threads: the steps that run
// alongside run one after the other instead, and the isolation is enforced all the same. In a
// child process limited to no processes (as nobody when run as root, whom the limit does not
// bind); it exits 0 when the apply was whole, 77 when threads could still be started.
TEST_F(ReconcilerTest, WithoutThreadsTheStepsRunOneAfterTheOther) {
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0777), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::geteuid() == 0 &&
        (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)) {
      ::_exit(2);
    }
    const rlimit none{0, 0};
    if (::setrlimit(RLIMIT_NPROC, &none) != 0) ::_exit(3);
    try {
      std::thread([] {}).join();
      ::_exit(77);
    } catch (const std::system_error&) {
    }
    auto rec = make();
    auto r = rec->apply(isolated(5));
    bool whole = r.ok() && r.flows_cut() == 1 && fw_.present && hasStep(r, "persist") &&
                 hasStep(r, "cut flows") && r.steps(0).name() == "persist";
    auto persisted = loadDesiredState(dir_.path());
    whole = whole && persisted.ok() && persisted->has_value();
    if (!whole) std::fprintf(stderr, "not whole: %s\n", r.ShortDebugString().c_str());
    ::_exit(whole ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "threads could still be started";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(ReconcilerTest, AStateThatCannotBePersistedIsEnforcedAndSaysSo) {
  auto rec = std::make_unique<Reconciler>(
      ReconcilerOptions{dir_.path() / "missing", {endpoint("10.77.0.9", 7443)}, absl::OkStatus()},
      &fw_, &killer_, [this] { return now_; });
  auto r = rec->apply(isolated(5));
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("not persisted"), std::string::npos) << r.error();
  EXPECT_EQ(r.steps(0).name(), "persist");
  EXPECT_FALSE(r.steps(0).ok());
  EXPECT_TRUE(fw_.present);
  EXPECT_EQ(r.enforced_generation(), 5u);
  EXPECT_EQ(r.flows_cut(), 1u);
}

TEST_F(ReconcilerTest, NewPinnedControllerIsRenderedWhileIsolated) {
  auto rec = make();
  ASSERT_TRUE(rec->apply(isolated(5)).ok());
  auto r = rec->setPinnedController({endpoint("10.77.0.8", 7443)});
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->ok());
  EXPECT_NE(fw_.table.find("10.77.0.8"), std::string::npos);
  EXPECT_FALSE(rec->setPinnedController({endpoint("10.77.0.8", 7443)}).has_value());
}

// Two replicas of the controller pinned (the session may be on either): an isolation keeps
// both reachable, whatever the desired state lists, and so does a fail-closed isolation.
TEST_F(ReconcilerTest, IsolationKeepsEveryPinnedControllerReplica) {
  const std::vector<PinnedController> pins = {
      {"ctl-a.example", 7443, {"10.77.0.21", "fd77::21"}, 1},
      {"ctl-b.example", 7443, {"10.77.0.22"}, 1}};
  killer_.flows = {
      tcp("10.77.1.11", 40010, "10.77.0.21", 7443),  // replica A: kept
      tcp("10.77.1.11", 40011, "10.77.0.22", 7443),  // replica B: kept
      tcp("10.77.1.11", 40012, "10.77.0.23", 7443),  // not a replica: cut
      tcp("10.77.1.11", 40013, "10.77.0.22", 7444),  // replica B, another port: cut
  };
  Reconciler rec(ReconcilerOptions{dir_.path(), controllerEndpoints(pins), absl::OkStatus()}, &fw_,
                 &killer_, [this] { return now_; });
  auto r = rec.apply(isolated(5));  // lists 10.77.0.2 only
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.flows_cut(), 2u);
  ASSERT_EQ(killer_.flows.size(), 2u);
  EXPECT_EQ(killer_.flows[0].local_port, 40010);
  EXPECT_EQ(killer_.flows[1].local_port, 40011);
  for (const char* ip : {"10.77.0.2", "10.77.0.21", "10.77.0.22", "fd77::21"}) {
    EXPECT_NE(fw_.table.find(ip), std::string::npos) << ip << " missing from\n" << fw_.table;
  }
  v1::DesiredState merged = isolated(5);
  for (const auto& ep : controllerEndpoints(pins)) *merged.add_controller_endpoints() = ep;
  EXPECT_TRUE(flowKept(tcp("10.77.1.11", 40020, "10.77.0.21", 7443), merged, kNow));
  EXPECT_TRUE(flowKept(tcp("10.77.1.11", 40021, "10.77.0.22", 7443), merged, kNow));

  // Fail-closed (an unreadable state at start): controller-only, both replicas still kept.
  TempDir closed_dir;
  ASSERT_TRUE(writeFileAtomic(desiredStatePath(closed_dir.path()), "\xff garbage", 0600).ok());
  FakeFirewall closed_fw;
  killer_.flows = {tcp("10.77.1.11", 40010, "10.77.0.21", 7443),
                   tcp("10.77.1.11", 40011, "10.77.0.22", 7443),
                   tcp("10.77.1.11", 22, "10.77.0.66", 51234)};
  Reconciler closed(
      ReconcilerOptions{closed_dir.path(), controllerEndpoints(pins), absl::OkStatus()}, &closed_fw,
      &killer_, [this] { return now_; });
  auto c = closed.restore();
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->left_closed());
  EXPECT_TRUE(closed.state().fail_closed);
  EXPECT_EQ(killer_.flows.size(), 2u);  // the two replicas' channels survive
  for (const char* ip : {"10.77.0.21", "10.77.0.22", "fd77::21"}) {
    EXPECT_NE(closed_fw.table.find(ip), std::string::npos) << ip;
  }
}

v1::DesiredState withBlocks(uint64_t gen, std::vector<std::pair<const char*, int64_t>> blocks) {
  v1::DesiredState s;
  s.set_generation(gen);
  for (const auto& [cidr, expires] : blocks) {
    auto* b = s.add_blocks();
    b->set_remote_cidr(cidr);
    b->set_expires_at_unix_ms(expires);
  }
  return s;
}

TEST_F(ReconcilerTest, ABlockExpiringAtTheEndOfTimeKeepsItsDeadlineInTheFuture) {
  auto rec = make();
  auto r = rec->apply(withBlocks(1, {{"10.77.0.66", std::numeric_limits<int64_t>::max()}}));
  ASSERT_TRUE(r.ok()) << r.error();
  // Saturates: the expiry plus the re-read slack must not wrap into the past.
  EXPECT_EQ(rec->nextDeadline(), std::numeric_limits<int64_t>::max());
}

TEST_F(ReconcilerTest, BlockChangesAreIncrementalAndCutMatchingFlows) {
  auto rec = make();
  killer_.flows = {tcp("10.77.1.11", 22, "10.77.0.66", 51000),
                   tcp("10.77.1.11", 22, "10.77.0.50", 51001)};
  auto r = rec->apply(withBlocks(1, {{"10.77.0.67", 0}}));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(fw_.applies, 1);
  EXPECT_EQ(killer_.flows.size(), 2u);   // nothing matched 10.77.0.67
  r = rec->apply(withBlocks(2, {{"10.77.0.67", 0}, {"10.77.0.66", kNow + 3000}}));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(fw_.applies, 1);   // no rebuild
  ASSERT_EQ(fw_.batches.size(), 1u);
  EXPECT_NE(fw_.batches[0].find("add element inet bulkhead blk4_in_addr_32 { 10.77.0.66 "
                                "timeout 3000ms }"),
            std::string::npos)
      << fw_.batches[0];
  EXPECT_TRUE(hasStep(r, "update blocks"));
  EXPECT_EQ(r.flows_cut(), 1u);   // the attacker's session, not the bystander's
  ASSERT_EQ(killer_.flows.size(), 1u);
  EXPECT_EQ(r.ruleset_hash(), rulesetHash("read back: " + fw_.table));
  // The kernel expires the element; the tick re-reads the hash, and a re-check is no tamper.
  EXPECT_EQ(rec->nextDeadline(), kNow + 3000 + 200);
  now_ = kNow + 3200;
  fw_.table += "# element expired\n";
  EXPECT_FALSE(rec->tick().has_value());
  EXPECT_FALSE(rec->recheck("NEWGEN").has_value());
  // A new prefix length needs a new set: full rebuild.
  r = rec->apply(withBlocks(3, {{"10.77.0.67", 0}, {"10.78.0.0/16", 0}}));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(fw_.applies, 2);
  // A failed incremental update falls back to a rebuild.
  fw_.update_error = absl::AbortedError("element missing");
  r = rec->apply(withBlocks(4, {{"10.78.0.0/16", 0}, {"10.77.0.67", 0}, {"10.77.0.68", 0}}));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(fw_.applies, 3);
  // All blocks gone: the table is removed.
  r = rec->apply(withBlocks(5, {}));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_FALSE(fw_.present);
}

TEST_F(ReconcilerTest, ExpiredBlocksAreNotRestored) {
  ASSERT_TRUE(
      persistDesiredState(dir_.path(), withBlocks(3, {{"10.77.0.66", kNow + 5000},
                                                      {"10.77.0.67", kNow - 1}}))
          .ok());
  auto rec = make();
  auto r = rec->restore();
  ASSERT_TRUE(r.has_value() && r->ok());
  EXPECT_NE(fw_.table.find("10.77.0.66 timeout 5000ms"), std::string::npos) << fw_.table;
  EXPECT_EQ(fw_.table.find("10.77.0.67"), std::string::npos);
}

TEST_F(ReconcilerTest, KillConnectionsCutsOnlyMatchingFlowsAndListsThem) {
  killer_.flows = {tcp("10.77.1.11", 22, "10.77.0.66", 51000),
                   tcp("10.77.1.11", 8080, "10.77.0.66", 51001),
                   tcp("10.77.1.11", 22, "10.77.0.50", 51002)};
  killer_.flows[0].owner_pid = 4242;
  v1::Command c;
  c.set_id("cmd-1");
  c.mutable_kill_connections()->set_remote_cidr("10.77.0.64/30");
  c.mutable_kill_connections()->mutable_ports()->set_first(22);
  c.mutable_kill_connections()->mutable_ports()->set_last(22);
  auto r = killConnections(killer_, c);
  EXPECT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.command_id(), "cmd-1");
  ASSERT_TRUE(r.has_kill_connections());
  EXPECT_EQ(r.kill_connections().connections_cut(), 1u);
  ASSERT_EQ(r.kill_connections().connections_size(), 1);
  const v1::CutConnection& cut = r.kill_connections().connections(0);
  EXPECT_EQ(cut.proto(), v1::PROTOCOL_TCP);
  EXPECT_EQ(cut.pid(), 4242u);
  EXPECT_EQ(cut.remote(), "10.77.0.66");
  EXPECT_EQ(cut.remote_port(), 51000u);
  EXPECT_EQ(cut.local_port(), 22u);
  EXPECT_NE(cut.how(), v1::CUT_METHOD_UNSPECIFIED);
  EXPECT_EQ(killer_.flows.size(), 2u);
  // No port: every flow of the remote.
  c.mutable_kill_connections()->clear_ports();
  r = killConnections(killer_, c);
  EXPECT_EQ(r.kill_connections().connections_cut(), 1u);
  EXPECT_EQ(killer_.flows.size(), 1u);
  // Bad input: refused, nothing cut.
  c.mutable_kill_connections()->set_remote_cidr("10.77.0.300");
  r = killConnections(killer_, c);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.refused());
  EXPECT_NE(r.error().find("remote_cidr"), std::string::npos);
  EXPECT_EQ(killer_.flows.size(), 1u);
}

}  // namespace
}  // namespace bulkhead::agent
