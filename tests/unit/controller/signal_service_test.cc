// SignalService: a real SQLite store (through the fault-injecting wrapper), a fake host
// directory and a fake actuator. What is recorded, audited and started, and that nothing is
// answered as recorded that was not.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "controller/service/signals.h"
#include "controller/store/sqlite_store.h"
#include "tests/unit/controller/fake_clock.h"
#include "tests/unit/controller/faulty_store.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
namespace fs = std::filesystem;
using ::testing::HasSubstr;

// h1, h2 (role=web) and h3 (role=db) of tenant default; a1 (web) and a2 (db) of tenant acme;
// b1 (web) of tenant beta.
class FakeDirectory final : public HostDirectory {
 public:
  std::vector<v1::HostSummary> listHosts(const Labels&) override {
    std::vector<v1::HostSummary> out;
    for (const char* id : {"h1", "h2", "h3", "a1", "a2", "b1"}) {
      v1::HostSummary h;
      h.set_host_id(id);
      h.set_hostname(id);
      const std::string name(id);
      (*h.mutable_labels())["role"] = name == "h3" || name == "a2" ? "db" : "web";
      h.add_addresses(std::string(name[0] == 'h' ? "10.77.0.1" : "10.77.1.1") + id[1]);
      if (name[0] == 'a') h.set_tenant("acme");
      if (name[0] == 'b') h.set_tenant("beta");
      out.push_back(h);
    }
    return out;
  }
  std::optional<v1::HostStatus> getHost(const std::string&) override { return std::nullopt; }
  bool applyLabels(const std::string&, const Labels&, const std::string&) override {
    return false;  // not used here
  }
  bool online(const std::string&) override { return true; }
};

// Records every start; answers OK at once, or, with a gate, once the gate opens (holding the
// signals thread meanwhile, so the signals submitted then queue up).
class FakeActuator final : public SignalActuator {
 public:
  struct Started {
    std::string caller;
    ActionKind kind;
    std::string target;
    std::string reason;
    std::vector<std::string> tenants;  // the caller's tenants
    std::string incident;              // the caller's incident
  };
  void start(const Caller& caller, const PlannedAction& action, const std::string& reason,
             std::function<void(const absl::Status&, const std::string&)> done) override {
    {
      std::lock_guard lock(mu);
      started.push_back({caller.audit_name, action.kind, action.target(), reason, caller.tenants,
                         caller.incident});
    }
    if (gate.valid()) gate.wait_for(std::chrono::seconds(10));
    done(absl::OkStatus(), "hosts 3 enforced");
  }
  std::vector<Started> all() {
    std::lock_guard lock(mu);
    return started;
  }
  std::mutex mu;
  std::vector<Started> started;
  std::shared_future<void> gate;  // set before any signal is submitted
};

class SignalServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("bh-signals-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "policies" / "playbooks");
    std::ofstream(dir_ / "policies" / "playbooks" / "ssh.yaml")
        << "name: ssh\ndescription: d\nmatch: {source: fail2ban}\nrate_per_minute: 4\n"
           "actions: [{action: block}, {action: kill-connections}]\n";
    auto store = SqliteStore::create(dir_ / "controller.db");
    ASSERT_TRUE(store.ok()) << store.status();
    real_ = *std::move(store);
    faulty_ = std::make_unique<testing::FaultyStore>(*real_);
    startService();
  }
  // (Re)starts the service on the same store, as a controller restart would.
  void startService() {
    service_.reset();
    SignalServiceOptions options{.policy_dir = (dir_ / "policies").string()};
    options.blocks.controller_ips = {"10.77.0.1"};
    options.approval_check_period = std::chrono::milliseconds(0);  // tests expire by hand
    service_ = std::make_unique<SignalService>(clock_, *faulty_, directory_, actuator_, options);
    ASSERT_TRUE(service_->reload().ok());
  }
  void TearDown() override {
    service_.reset();
    faulty_.reset();
    real_.reset();
    fs::remove_all(dir_);
  }

  absl::StatusOr<SignalOutcome> submit(const v1::Signal& s, const std::string& from_host = "h1") {
    return submitLater(s, from_host).get();
  }
  // Submits `s` without waiting for its answer.
  std::future<absl::StatusOr<SignalOutcome>> submitLater(const v1::Signal& s,
                                                         const std::string& from_host = "h1") {
    auto p = std::make_shared<std::promise<absl::StatusOr<SignalOutcome>>>();
    auto answer = p->get_future();
    service_->submit(
        SignalDelivery{.delivered_by = "host:" + from_host, .reporting_host = from_host}, s,
        [p](absl::StatusOr<SignalOutcome> o) { p->set_value(std::move(o)); });
    return answer;
  }
  // Submits `s` and returns once its first action holds the signals thread at the actuator's
  // gate (until `open` is set): signals submitted meanwhile queue up as one batch.
  std::future<absl::StatusOr<SignalOutcome>> holdTheSignalsThread(const v1::Signal& s,
                                                                  std::promise<void>& open) {
    actuator_.gate = open.get_future().share();
    auto answer = submitLater(s);
    for (int i = 0; i < 1000 && actuator_.all().empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return answer;
  }
  static std::vector<absl::StatusOr<SignalOutcome>> answersOf(
      std::vector<std::future<absl::StatusOr<SignalOutcome>>>& answers) {
    std::vector<absl::StatusOr<SignalOutcome>> out;
    out.reserve(answers.size());
    for (auto& a : answers) out.push_back(a.get());
    return out;
  }
  static v1::Signal ban(const std::string& ip, const std::string& key = "") {
    v1::Signal s;
    s.set_source(v1::SIGNAL_SOURCE_FAIL2BAN);
    s.set_rule("sshd");
    s.add_addresses(ip);
    s.set_ttl_seconds(600);
    s.set_idempotency_key(key);
    return s;
  }
  std::vector<AuditEntry> audit() { return *real_->listAudit(0); }

  fs::path dir_;
  FakeClock clock_;
  FakeDirectory directory_;
  FakeActuator actuator_;
  std::unique_ptr<SqliteStore> real_;
  std::unique_ptr<testing::FaultyStore> faulty_;
  std::unique_ptr<SignalService> service_;
};

TEST_F(SignalServiceTest, ARecordedSignalActsAsItsPlaybookNamingTheSignal) {
  auto out = submit(ban("203.0.113.7"));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->disposition, v1::SIGNAL_DISPOSITION_ACTED);
  ASSERT_EQ(out->actions.size(), 2u);
  // Recorded before it was answered, with the reporting host from the delivery.
  auto rows = real_->listSignals(0, 10);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].record.signal_id(), out->signal_id);
  EXPECT_EQ((*rows)[0].record.signal().host(), "h1");
  EXPECT_EQ((*rows)[0].record.delivered_by(), "host:h1");
  // The actions start as the playbook, the signal's id in the reason.
  auto started = actuator_.all();
  ASSERT_EQ(started.size(), 2u);
  EXPECT_EQ(started[0].caller, "playbook:ssh");
  EXPECT_EQ(started[0].kind, ActionKind::kBlock);
  EXPECT_EQ(started[0].target, "all");
  EXPECT_THAT(started[0].reason, HasSubstr(out->signal_id));
  // One audit row for the signal, with the decision.
  auto rows_audit = audit();
  ASSERT_FALSE(rows_audit.empty());
  EXPECT_EQ(rows_audit.back().action, "signal");
  EXPECT_EQ(rows_audit.back().operator_name, "host:h1");
  EXPECT_EQ(rows_audit.back().reason, out->signal_id);
  EXPECT_EQ(rows_audit.back().outcome, "acted");
  // The actions' ends are written back into the record (on the signals thread).
  for (int i = 0; i < 200; ++i) {
    auto now = real_->listSignals(0, 10);
    if ((*now)[0].record.actions(1).outcome().starts_with("done")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const v1::SignalAction done = real_->listSignals(0, 10)->at(0).record.actions(0);
  EXPECT_EQ(done.outcome(), "done: hosts 3 enforced");
  // Stored typed as well as in text.
  EXPECT_EQ(done.kind(), v1::SIGNAL_ACTION_KIND_BLOCK);
  EXPECT_EQ(done.state(), v1::SIGNAL_ACTION_STATE_DONE);
  EXPECT_EQ(out->actions[0].state(), v1::SIGNAL_ACTION_STATE_STARTED);
}

TEST_F(SignalServiceTest, AFailedCommitAnswersAnErrorAndStartsNothing) {
  faulty_->failNext("addSignals");
  auto out = submit(ban("203.0.113.7"));
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(absl::IsUnavailable(out.status())) << out.status();
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("nothing done"));
  EXPECT_TRUE(actuator_.all().empty());
  EXPECT_TRUE(real_->listSignals(0, 10)->empty());
  // The same signal again, once the store works: recorded and acted on (not a duplicate), and
  // the failed one took no room under the cap: two more signals act.
  auto retry = submit(ban("203.0.113.7"));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->disposition, v1::SIGNAL_DISPOSITION_ACTED);
  EXPECT_EQ(submit(ban("198.51.100.1"))->disposition, v1::SIGNAL_DISPOSITION_ACTED);
}

TEST_F(SignalServiceTest, AReplayedKeyActsOnceAndCountsAgainstNoCap) {
  auto first = submit(ban("203.0.113.7", "f2b:sshd:203.0.113.7:1700000000"));
  ASSERT_TRUE(first.ok());
  for (int i = 0; i < 5; ++i) {
    auto again = submit(ban("203.0.113.7", "f2b:sshd:203.0.113.7:1700000000"));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->disposition, v1::SIGNAL_DISPOSITION_DUPLICATE);
    EXPECT_EQ(again->signal_id, first->signal_id);
  }
  EXPECT_EQ(actuator_.all().size(), 2u);
  EXPECT_EQ(real_->listSignals(0, 10)->size(), 1u);
  // The playbook's cap (4 actions per minute: two signals) still has room: duplicates took
  // none.
  auto second = submit(ban("198.51.100.1"));
  EXPECT_EQ(second->disposition, v1::SIGNAL_DISPOSITION_ACTED);
  // Past the dedupe window the key is new again.
  clock_.advance(std::chrono::hours(25));
  auto later = submit(ban("203.0.113.7", "f2b:sshd:203.0.113.7:1700000000"));
  EXPECT_NE(later->disposition, v1::SIGNAL_DISPOSITION_DUPLICATE);
}

TEST_F(SignalServiceTest, SignalsArrivingTogetherAreRecordedInOneCommitInTheirOrder) {
  // The first signal's action holds the signals thread; the next four queue behind it.
  std::promise<void> open;
  std::vector<std::future<absl::StatusOr<SignalOutcome>>> answers;
  answers.push_back(holdTheSignalsThread(ban("203.0.113.7"), open));
  ASSERT_EQ(actuator_.all().size(), 1u);
  const int commits_before = faulty_->calls("addSignals");
  answers.push_back(submitLater(ban("198.51.100.1", "k1")));
  answers.push_back(submitLater(ban("198.51.100.1", "k1")));  // the same key, in the same batch
  answers.push_back(submitLater(ban("198.51.100.2")));  // past the playbook's cap (two a minute)
  answers.push_back(submitLater(ban("198.51.100.1", "k1")));
  open.set_value();
  const auto out = answersOf(answers);
  for (const auto& o : out) ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(faulty_->calls("addSignals"), commits_before + 1);  // the four: one commit
  EXPECT_EQ(out[1]->disposition, v1::SIGNAL_DISPOSITION_ACTED);
  EXPECT_EQ(out[2]->disposition, v1::SIGNAL_DISPOSITION_DUPLICATE);
  EXPECT_EQ(out[2]->signal_id, out[1]->signal_id);
  EXPECT_EQ(out[4]->disposition, v1::SIGNAL_DISPOSITION_DUPLICATE);
  EXPECT_EQ(out[4]->signal_id, out[1]->signal_id);
  EXPECT_EQ(out[3]->disposition, v1::SIGNAL_DISPOSITION_SUPPRESSED);
  EXPECT_EQ(actuator_.all().size(), 4u);  // two signals, two actions each
  auto listed = real_->listSignals(0, 10);
  ASSERT_EQ(listed->size(), 3u);
  // The audit trail has them in the order they came, each duplicate naming the first.
  std::vector<std::string> order;
  for (const AuditEntry& e : audit()) {
    if (e.action == "signal") order.push_back(e.reason + " " + e.outcome);
  }
  ASSERT_EQ(order.size(), 5u);
  EXPECT_EQ(order[1], out[1]->signal_id + " acted");
  EXPECT_EQ(order[2], out[1]->signal_id + " ok");  // the duplicate's row
  EXPECT_EQ(order[3], out[3]->signal_id + " suppressed by a guardrail");
  EXPECT_EQ(order[4], out[1]->signal_id + " ok");
  EXPECT_TRUE(real_->verifyAudit()->ok);
}

TEST_F(SignalServiceTest, WhenABatchFailsToCommitEachSignalIsTakenAgainAlone) {
  std::promise<void> open;
  std::vector<std::future<absl::StatusOr<SignalOutcome>>> answers;
  answers.push_back(holdTheSignalsThread(ban("203.0.113.7"), open));
  ASSERT_EQ(actuator_.all().size(), 1u);
  const int commits_before = faulty_->calls("addSignals");
  faulty_->failNext("addSignals");  // the batch of the next two
  answers.push_back(submitLater(ban("198.51.100.1")));
  answers.push_back(submitLater(ban("198.51.100.1")));  // its duplicate
  open.set_value();
  const auto out = answersOf(answers);
  for (const auto& o : out) ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(faulty_->calls("addSignals"), commits_before + 3);  // the batch, then each
  // Nothing was lost, nothing was counted twice: the retry decided afresh, so the failed
  // batch took no room under the cap, and the duplicate still names the first.
  EXPECT_EQ(out[1]->disposition, v1::SIGNAL_DISPOSITION_ACTED);
  EXPECT_EQ(out[2]->disposition, v1::SIGNAL_DISPOSITION_DUPLICATE);
  EXPECT_EQ(out[2]->signal_id, out[1]->signal_id);
  EXPECT_EQ(real_->listSignals(0, 10)->size(), 2u);
  EXPECT_EQ(actuator_.all().size(), 4u);
}

TEST_F(SignalServiceTest, SuppressionsAndTheRateCapAreAudited) {
  auto protected_ip = submit(ban("10.77.0.1"));  // the controller
  ASSERT_TRUE(protected_ip.ok());
  EXPECT_EQ(protected_ip->disposition, v1::SIGNAL_DISPOSITION_SUPPRESSED);
  EXPECT_TRUE(actuator_.all().empty());
  int suppression_rows = 0;
  for (const AuditEntry& e : audit()) {
    if (e.action == kSignalActionAuditAction && e.reason == protected_ip->signal_id) {
      ++suppression_rows;
      EXPECT_EQ(e.operator_name, "playbook:ssh");
      EXPECT_THAT(e.detail, HasSubstr("protected address"));
    }
  }
  EXPECT_EQ(suppression_rows, 2);  // block and kill-connections
  // Two actions per signal, four per minute (suppressed ones took no room): the third signal
  // is capped.
  ASSERT_EQ(submit(ban("203.0.113.1"))->disposition, v1::SIGNAL_DISPOSITION_ACTED);
  ASSERT_EQ(submit(ban("203.0.113.2"))->disposition, v1::SIGNAL_DISPOSITION_ACTED);
  ASSERT_EQ(submit(ban("203.0.113.4"))->disposition, v1::SIGNAL_DISPOSITION_SUPPRESSED);
  ASSERT_EQ(submit(ban("203.0.113.3"))->disposition, v1::SIGNAL_DISPOSITION_SUPPRESSED);
  int cap_rows = 0;
  for (const AuditEntry& e : audit()) cap_rows += e.action == kSignalRateCapAuditAction;
  EXPECT_EQ(cap_rows, 1);  // one notification-worthy row per burst
}

TEST_F(SignalServiceTest, BadSignalsAreRefusedAndAuditedAndNotRecorded) {
  v1::Signal bad = ban("203.0.113.300");
  auto out = submit(bad);
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(out.status()));
  EXPECT_TRUE(real_->listSignals(0, 10)->empty());
  EXPECT_EQ(audit().back().action, "signal");
  EXPECT_THAT(audit().back().outcome, HasSubstr("error"));
}

TEST_F(SignalServiceTest, ABadReloadKeepsThePlaybooksInForce) {
  std::ofstream(dir_ / "policies" / "playbooks" / "broken.yaml") << "name: [x]\n";
  absl::Status s = service_->reload();
  EXPECT_THAT(std::string(s.message()), HasSubstr("broken.yaml:1: name"));
  EXPECT_EQ(service_->playbookCount(), 1u);
  EXPECT_EQ(submit(ban("203.0.113.7"))->disposition, v1::SIGNAL_DISPOSITION_ACTED);
}

// Playbooks with `incident:` attach their actions to an incident, or open one.
TEST_F(SignalServiceTest, APlaybookOpensItsIncidentAndAttachesToItWhileItIsOpen) {
  std::ofstream(dir_ / "policies" / "playbooks" / "beacon.yaml")
      << "name: beacon\ndescription: d\nmatch: {source: alertmanager}\n"
         "actions: [{action: block}]\nincident: {open: C2 beacon, severity: high}\n";
  ASSERT_TRUE(service_->reload().ok());
  auto beacon = [&](const std::string& ip) {
    v1::Signal s;
    s.set_source(v1::SIGNAL_SOURCE_ALERTMANAGER);
    s.set_rule("beacon");
    s.add_addresses(ip);
    return submit(s);
  };
  auto first = beacon("203.0.113.7");
  ASSERT_TRUE(first.ok()) << first.status();
  auto started = actuator_.all();
  ASSERT_EQ(started.size(), 1u);
  const std::string id = started[0].incident;
  EXPECT_THAT(id, ::testing::StartsWith("beacon-"));
  auto incident = real_->getIncident("default", id);
  ASSERT_TRUE(incident.ok()) << incident.status();
  EXPECT_EQ(incident->title(), "C2 beacon");
  EXPECT_EQ(incident->severity(), v1::INCIDENT_SEVERITY_HIGH);
  EXPECT_EQ(incident->opened_by(), "playbook:beacon");
  EXPECT_EQ(incident->state(), v1::INCIDENT_STATE_OPEN);
  // The opening and the signal are rows of the incident's timeline.
  auto rows = real_->listIncidentAudit("default", id);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].action, "incident-open");
  EXPECT_EQ((*rows)[0].operator_name, "playbook:beacon");
  EXPECT_EQ((*rows)[1].action, "signal");
  EXPECT_EQ((*rows)[1].reason, first->signal_id);

  // The next signal attaches to the same incident; a playbook without `incident:` to none.
  ASSERT_TRUE(beacon("203.0.113.8").ok());
  ASSERT_TRUE(submit(ban("198.51.100.1")).ok());
  started = actuator_.all();
  ASSERT_EQ(started.size(), 4u);
  EXPECT_EQ(started[1].incident, id);
  EXPECT_EQ(started[2].incident, "");
  EXPECT_EQ(real_->listIncidents({"default"})->size(), 1u);

  // Once a person closes it, the next action opens a new one (same second: a new id).
  v1::Incident closed = *incident;
  closed.set_state(v1::INCIDENT_STATE_CLOSED);
  ASSERT_TRUE(real_
                  ->updateIncident(closed, AuditEntry{.operator_name = "ann",
                                                      .action = "incident-close",
                                                      .target = id,
                                                      .incident = id})
                  .ok());
  ASSERT_TRUE(beacon("203.0.113.9").ok());
  started = actuator_.all();
  ASSERT_EQ(started.size(), 5u);
  EXPECT_NE(started[4].incident, id);
  EXPECT_THAT(started[4].incident, ::testing::StartsWith("beacon-"));
  EXPECT_EQ(real_->listIncidents({"default"})->size(), 2u);

  // A simulating playbook records what it would do and opens nothing.
  std::ofstream(dir_ / "policies" / "playbooks" / "beacon.yaml")
      << "name: beacon\ndescription: d\nmatch: {source: alertmanager}\nsimulate: true\n"
         "actions: [{action: block}]\nincident: {open: C2 beacon, severity: high}\n";
  ASSERT_TRUE(service_->reload().ok());
  v1::Incident second = *real_->getIncident("default", started[4].incident);
  second.set_state(v1::INCIDENT_STATE_CLOSED);
  ASSERT_TRUE(real_
                  ->updateIncident(second, AuditEntry{.operator_name = "ann",
                                                      .action = "incident-close",
                                                      .target = second.incident_id(),
                                                      .incident = second.incident_id()})
                  .ok());
  auto simulated = beacon("203.0.113.10");
  ASSERT_TRUE(simulated.ok()) << simulated.status();
  EXPECT_EQ(simulated->disposition, v1::SIGNAL_DISPOSITION_SIMULATED);
  EXPECT_EQ(actuator_.all().size(), 5u);
  EXPECT_EQ(real_->listIncidents({"default"})->size(), 2u);
}

TEST_F(SignalServiceTest, APlaybookNamingAnIncidentActsWithoutItUntilItIsOpen) {
  std::ofstream(dir_ / "policies" / "playbooks" / "beacon.yaml")
      << "name: beacon\ndescription: d\nmatch: {source: alertmanager}\n"
         "actions: [{action: block}]\nincident: {id: INC-7}\n";
  ASSERT_TRUE(service_->reload().ok());
  v1::Signal s;
  s.set_source(v1::SIGNAL_SOURCE_ALERTMANAGER);
  s.add_addresses("203.0.113.7");
  // No INC-7 yet: the block still runs (containment never waits on paperwork), and the
  // signal's row says why it is not attached.
  auto out = submit(s);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(actuator_.all().size(), 1u);
  EXPECT_EQ(actuator_.all()[0].incident, "");
  EXPECT_THAT(audit().back().detail, HasSubstr("incident INC-7: unknown incident"));

  v1::Incident inc;
  inc.set_incident_id("INC-7");
  inc.set_tenant("default");
  inc.set_title("t");
  inc.set_state(v1::INCIDENT_STATE_OPEN);
  ASSERT_TRUE(
      real_->addIncident(inc, AuditEntry{.operator_name = "ann", .action = "incident-open"}).ok());
  s.set_addresses(0, "203.0.113.8");
  ASSERT_TRUE(submit(s).ok());
  ASSERT_EQ(actuator_.all().size(), 2u);
  EXPECT_EQ(actuator_.all()[1].incident, "INC-7");
  EXPECT_EQ(audit().back().incident, "INC-7");
}

// Approvals: an isolation of a role=db host (h3) waits for a responder.
class ApprovalTest : public SignalServiceTest {
 protected:
  void SetUp() override {
    SignalServiceTest::SetUp();
    std::ofstream(dir_ / "policies" / "playbooks" / "implant.yaml")
        << "name: implant\ndescription: d\nmatch: {source: alertmanager}\n"
           "actions: [{action: isolate, scope: affected-host, ttl: 1h}]\n";
    fs::create_directories(dir_ / "policies" / "guardrails");
    std::ofstream(dir_ / "policies" / "guardrails" / "automation.yaml")
        << "approval_for_isolate: [role=db]\n";
    ASSERT_TRUE(service_->reload().ok());
  }

  // An alert about h3 delivered by `by`; returns its approval's id.
  std::string alert(const std::string& by = "integration:am", const std::string& rule = "implant") {
    v1::Signal s;
    s.set_source(v1::SIGNAL_SOURCE_ALERTMANAGER);
    s.set_rule(rule);
    s.set_host("h3");
    std::promise<absl::StatusOr<SignalOutcome>> p;
    service_->submit(SignalDelivery{.delivered_by = by}, s,
                     [&](absl::StatusOr<SignalOutcome> o) { p.set_value(std::move(o)); });
    auto out = p.get_future().get();
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return "";
    EXPECT_EQ(out->disposition, v1::SIGNAL_DISPOSITION_AWAITING_APPROVAL);
    auto pending = service_->listApprovals(viewer_, false, 0);
    EXPECT_TRUE(pending.ok()) << pending.status();
    for (const v1::Approval& a : *pending) {
      if (a.signal_id() == out->signal_id) return a.approval_id();
    }
    ADD_FAILURE() << "no approval for " << out->signal_id;
    return "";
  }
  static Caller approver(const std::string& name) {
    return Caller{.audit_name = name, .is_operator = true, .role = Role::kApprover};
  }
  // Waits until the signals thread has written `want` (a prefix) as the approval's outcome.
  v1::Approval waitForOutcome(const std::string& id, const std::string& want) {
    v1::Approval a;
    for (int i = 0; i < 400; ++i) {
      a = *real_->getApproval(id);
      if (a.outcome().starts_with(want)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return a;
  }
  std::string signalOutcome(const std::string& signal_id) {
    return real_->getSignal(signal_id)->record.actions(0).outcome();
  }
  int auditRows(const std::string& action) {
    int n = 0;
    for (const AuditEntry& e : audit()) n += e.action == action;
    return n;
  }

  const Caller viewer_{.audit_name = "vera", .is_operator = true, .role = Role::kViewer};
};

TEST_F(ApprovalTest, ApproveRunsTheActionOnceAsTheApproverAndRecordsItsOutcome) {
  const std::string id = alert();
  ASSERT_FALSE(id.empty());
  EXPECT_TRUE(actuator_.all().empty());
  v1::Approval pending = *real_->getApproval(id);
  EXPECT_EQ(pending.state(), v1::APPROVAL_STATE_PENDING);
  EXPECT_EQ(pending.requested_by(), "integration:am");
  EXPECT_EQ(pending.playbook(), "implant");
  EXPECT_EQ(pending.action().action(), "isolate");
  EXPECT_EQ(pending.action().target(), "h3");
  EXPECT_EQ(pending.expires_unix_ms() - pending.requested_unix_ms(), 3'600'000);
  // `bulkhead signals` names the approval the action waits for.
  EXPECT_THAT(signalOutcome(pending.signal_id()), HasSubstr("awaiting approval " + id));
  EXPECT_EQ(real_->getSignal(pending.signal_id())->record.actions(0).state(),
            v1::SIGNAL_ACTION_STATE_AWAITING_APPROVAL);
  EXPECT_EQ(pending.action().kind(), v1::SIGNAL_ACTION_KIND_ISOLATE);
  EXPECT_EQ(pending.outcome_state(), v1::SIGNAL_ACTION_STATE_UNSPECIFIED);

  auto approved = service_->approve(approver("bob"), id, "INC-7: confirmed implant");
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::APPROVAL_STATE_APPROVED);
  EXPECT_EQ(approved->decided_by(), "bob");
  EXPECT_EQ(approved->outcome_state(), v1::SIGNAL_ACTION_STATE_STARTED);
  auto started = actuator_.all();
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].caller, "bob");
  EXPECT_EQ(started[0].kind, ActionKind::kIsolate);
  EXPECT_EQ(started[0].target, "h3");
  EXPECT_THAT(started[0].reason, HasSubstr("approval " + id + " of signal " + pending.signal_id()));
  EXPECT_THAT(started[0].reason, HasSubstr("INC-7: confirmed implant"));
  // Its end is written into the approval and the signal's record.
  const v1::Approval ended = waitForOutcome(id, "done");
  EXPECT_EQ(ended.outcome(), "done: hosts 3 enforced");
  EXPECT_EQ(ended.outcome_state(), v1::SIGNAL_ACTION_STATE_DONE);
  for (int i = 0;
       i < 400 && !signalOutcome(pending.signal_id()).ends_with("done: hosts 3 enforced"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(signalOutcome(pending.signal_id()),
            "approved by bob (" + id + "): done: hosts 3 enforced");
  EXPECT_EQ(real_->getSignal(pending.signal_id())->record.actions(0).state(),
            v1::SIGNAL_ACTION_STATE_DONE);
  // Once only: a second decision is refused and starts nothing.
  auto again = service_->approve(approver("dave"), id, "again");
  EXPECT_TRUE(absl::IsFailedPrecondition(again.status())) << again.status();
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("already approved by bob"));
  EXPECT_EQ(actuator_.all().size(), 1u);
  EXPECT_TRUE(service_->listApprovals(viewer_, false, 0)->empty());
  EXPECT_EQ(service_->listApprovals(viewer_, true, 0)->size(), 1u);
  // Audited: the decision (ok) and the refused second one.
  int approve_ok = 0, approve_refused = 0;
  for (const AuditEntry& e : audit()) {
    if (e.action != "approve") continue;
    (e.outcome == "ok" ? approve_ok : approve_refused)++;
    if (e.outcome == "ok") {
      EXPECT_EQ(e.operator_name, "bob");
      EXPECT_EQ(e.target, id);
      EXPECT_THAT(e.detail, HasSubstr(pending.signal_id()));
    }
  }
  EXPECT_EQ(approve_ok, 1);
  EXPECT_EQ(approve_refused, 1);
}

TEST_F(ApprovalTest, AnApprovedActionRunsInTheApproversIncidentWhichThePolicyCanRequire) {
  const std::string id = alert();
  ASSERT_FALSE(id.empty());
  Caller bob = approver("bob");
  bob.incident_required_by = "default";
  auto refused = service_->approve(bob, id, "looks right");
  ASSERT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("--incident: required in tenant default"));
  EXPECT_EQ(real_->getApproval(id)->state(), v1::APPROVAL_STATE_PENDING);
  EXPECT_TRUE(actuator_.all().empty());
  bob.incident = "INC-9";
  auto approved = service_->approve(bob, id, "looks right");
  ASSERT_TRUE(approved.ok()) << approved.status();
  ASSERT_EQ(actuator_.all().size(), 1u);
  EXPECT_EQ(actuator_.all()[0].incident, "INC-9");
  EXPECT_EQ(audit().back().incident, "INC-9");
}

TEST_F(ApprovalTest, RejectAndExpiryRunNothingAndAreAudited) {
  const std::string rejected = alert("integration:am", "implant-1");
  const std::string expiring = alert("integration:am", "implant-2");
  ASSERT_NE(rejected, expiring);
  auto r = service_->reject(approver("bob"), rejected, "false positive");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state(), v1::APPROVAL_STATE_REJECTED);
  EXPECT_EQ(r->outcome_state(), v1::SIGNAL_ACTION_STATE_NOT_RUN);
  EXPECT_EQ(auditRows("reject"), 1);
  // Not yet due: nothing expires.
  EXPECT_EQ(service_->expireApprovals(), 0u);
  clock_.advance(std::chrono::minutes(61));
  EXPECT_EQ(service_->expireApprovals(), 1u);
  v1::Approval expired = *real_->getApproval(expiring);
  EXPECT_EQ(expired.state(), v1::APPROVAL_STATE_EXPIRED);
  EXPECT_EQ(expired.decided_by(), "controller");
  EXPECT_EQ(expired.outcome_state(), v1::SIGNAL_ACTION_STATE_NOT_RUN);
  EXPECT_EQ(real_->getApproval(rejected)->state(), v1::APPROVAL_STATE_REJECTED);
  const AuditEntry last = [&] {
    AuditEntry found;
    for (const AuditEntry& e : audit()) {
      if (e.action == kApprovalExpiredAuditAction) found = e;
    }
    return found;
  }();
  EXPECT_EQ(last.operator_name, "controller");
  EXPECT_EQ(last.target, expiring);
  EXPECT_THAT(last.detail, HasSubstr("rejected"));
  EXPECT_EQ(auditRows(kApprovalExpiredAuditAction), 1);
  // Nothing ran, and an expired approval cannot be approved any more.
  auto late = service_->approve(approver("bob"), expiring, "too late");
  EXPECT_TRUE(absl::IsFailedPrecondition(late.status())) << late.status();
  EXPECT_TRUE(actuator_.all().empty());
  EXPECT_EQ(service_->expireApprovals(), 0u);
  for (int i = 0; i < 400 && !signalOutcome(expired.signal_id()).starts_with("expired"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_THAT(signalOutcome(expired.signal_id()), HasSubstr("expired (" + expiring + ")"));
}

TEST_F(ApprovalTest, APersonMayNotApproveTheirOwnRequestNorAViewerOrAResponderAny) {
  const std::string id = alert("operator:alice");
  auto own = service_->approve(approver("alice"), id, "mine");
  EXPECT_TRUE(absl::IsPermissionDenied(own.status())) << own.status();
  EXPECT_THAT(std::string(own.status().message()), HasSubstr("another responder must approve"));
  auto viewer = service_->approve(viewer_, id, "looks bad");
  EXPECT_TRUE(absl::IsPermissionDenied(viewer.status())) << viewer.status();
  const Caller responder{.audit_name = "rita", .is_operator = true, .role = Role::kResponder};
  auto not_approver = service_->approve(responder, id, "looks bad");
  EXPECT_TRUE(absl::IsPermissionDenied(not_approver.status())) << not_approver.status();
  EXPECT_EQ(not_approver.status().message(),
            "operator \"rita\" has role responder: approve needs approver");
  auto no_reason = service_->approve(approver("bob"), id, "");
  EXPECT_TRUE(absl::IsInvalidArgument(no_reason.status())) << no_reason.status();
  EXPECT_TRUE(actuator_.all().empty());
  EXPECT_EQ(real_->getApproval(id)->state(), v1::APPROVAL_STATE_PENDING);
  EXPECT_TRUE(service_->approve(approver("bob"), id, "INC-8").ok());
  EXPECT_EQ(actuator_.all().size(), 1u);
}

TEST_F(ApprovalTest, OfTwoRacingDecisionsOneWins) {
  for (int round = 0; round < 5; ++round) {
    const std::string id = alert("integration:am", "race-" + std::to_string(round));
    const size_t before = actuator_.all().size();
    std::promise<void> go;
    std::shared_future<void> ready = go.get_future().share();
    auto approve = std::async(std::launch::async, [&] {
      ready.wait();
      return service_->approve(approver("bob"), id, "go");
    });
    auto reject = std::async(std::launch::async, [&] {
      ready.wait();
      return service_->reject(approver("dave"), id, "stop");
    });
    go.set_value();
    auto a = approve.get();
    auto r = reject.get();
    ASSERT_NE(a.ok(), r.ok()) << a.status() << " / " << r.status();
    const absl::Status& lost = a.ok() ? r.status() : a.status();
    EXPECT_TRUE(absl::IsFailedPrecondition(lost)) << lost;
    EXPECT_EQ(actuator_.all().size(), before + (a.ok() ? 1 : 0));
    EXPECT_EQ(real_->getApproval(id)->state(),
              a.ok() ? v1::APPROVAL_STATE_APPROVED : v1::APPROVAL_STATE_REJECTED);
  }
}

TEST_F(ApprovalTest, PendingApprovalsSurviveARestartAndStillExpire) {
  const std::string kept = alert("integration:am", "restart-1");
  const std::string expiring = alert("integration:am", "restart-2");
  startService();  // a controller restart: nothing in memory
  auto pending = service_->listApprovals(viewer_, false, 0);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 2u);
  EXPECT_TRUE(service_->approve(approver("bob"), kept, "after restart").ok());
  EXPECT_EQ(actuator_.all().size(), 1u);
  clock_.advance(std::chrono::hours(2));
  EXPECT_EQ(service_->expireApprovals(), 1u);
  EXPECT_EQ(real_->getApproval(expiring)->state(), v1::APPROVAL_STATE_EXPIRED);
}

TEST_F(ApprovalTest, AFailedCommitChangesNothing) {
  const std::string id = alert();
  const size_t audit_before = audit().size();
  faulty_->failNext("decideApproval");
  auto out = service_->approve(approver("bob"), id, "INC-9");
  EXPECT_TRUE(absl::IsUnavailable(out.status())) << out.status();
  EXPECT_TRUE(actuator_.all().empty());
  EXPECT_EQ(real_->getApproval(id)->state(), v1::APPROVAL_STATE_PENDING);
  // Only the refused call's row was added.
  ASSERT_EQ(audit().size(), audit_before + 1);
  EXPECT_THAT(audit().back().outcome, HasSubstr("error"));
  // An expiry whose commit fails leaves it pending, and the next pass expires it.
  clock_.advance(std::chrono::hours(2));
  faulty_->failNext("decideApproval");
  EXPECT_EQ(service_->expireApprovals(), 0u);
  EXPECT_EQ(real_->getApproval(id)->state(), v1::APPROVAL_STATE_PENDING);
  EXPECT_EQ(service_->expireApprovals(), 1u);
  // A real rollback: the audit append fails inside the decision's transaction.
  const std::string second = alert("integration:am", "rollback");
  ASSERT_TRUE(real_
                  ->execForTest("CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN "
                                "SELECT RAISE(ABORT, 'injected'); END")
                  .ok());
  auto failed = service_->reject(approver("bob"), second, "x");
  EXPECT_FALSE(failed.ok());
  ASSERT_TRUE(real_->execForTest("DROP TRIGGER no_audit").ok());
  EXPECT_EQ(real_->getApproval(second)->state(), v1::APPROVAL_STATE_PENDING);
}

TEST_F(ApprovalTest, GuardrailsAreCheckedAgainWhenApproved) {
  const std::string id = alert();
  // h3 became protected meanwhile: approving it would isolate a protected host.
  std::ofstream(dir_ / "policies" / "guardrails" / "automation.yaml")
      << "approval_for_isolate: [role=db]\nprotected_hosts: [role=db]\n";
  ASSERT_TRUE(service_->reload().ok());
  auto out = service_->approve(approver("bob"), id, "INC-10");
  EXPECT_TRUE(absl::IsFailedPrecondition(out.status())) << out.status();
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("guardrail"));
  EXPECT_TRUE(actuator_.all().empty());
  EXPECT_EQ(real_->getApproval(id)->state(), v1::APPROVAL_STATE_PENDING);
}

// Tenants: acme has its own playbook and guardrails, beta opts into the shared "ssh".
class TenantSignalTest : public ApprovalTest {
 protected:
  void SetUp() override {
    ApprovalTest::SetUp();
    const fs::path acme = dir_ / "policies" / "tenants" / "acme";
    fs::create_directories(acme / "playbooks");
    fs::create_directories(acme / "guardrails");
    std::ofstream(acme / "playbooks" / "acme-ssh.yaml")
        << "name: acme-ssh\ndescription: d\nmatch: {source: fail2ban}\nrate_per_minute: 2\n"
           "actions: [{action: block}]\n";
    std::ofstream(acme / "playbooks" / "acme-implant.yaml")
        << "name: acme-implant\ndescription: d\nmatch: {source: alertmanager}\n"
           "actions: [{action: isolate, scope: affected-host, ttl: 1h}]\n";
    std::ofstream(acme / "guardrails" / "automation.yaml") << "approval_for_isolate: [role=db]\n";
    std::ofstream(dir_ / "policies" / "tenants" / "beta.yaml") << "playbooks: [ssh]\n";
    ASSERT_TRUE(service_->reload().ok());
  }
  absl::StatusOr<SignalOutcome> deliver(const v1::Signal& s, SignalDelivery from) {
    std::promise<absl::StatusOr<SignalOutcome>> p;
    service_->submit(std::move(from), s,
                     [&](absl::StatusOr<SignalOutcome> o) { p.set_value(std::move(o)); });
    return p.get_future().get();
  }
  static Caller of(const std::string& name, const std::string& tenant, Role role) {
    return Caller{.audit_name = name,
                  .is_operator = true,
                  .grants = {Grant{.tenant = tenant, .role = role}},
                  .tenants = {tenant}};
  }
};

TEST_F(TenantSignalTest, EachTenantRunsItsOwnPlaybooksOnItsOwnHostsOnly) {
  EXPECT_EQ(service_->playbookCount(), 5u);  // ssh, implant; acme-ssh, acme-implant; beta's ssh
  auto acme = submit(ban("203.0.113.7"), "a1");
  ASSERT_TRUE(acme.ok()) << acme.status();
  EXPECT_EQ(acme->disposition, v1::SIGNAL_DISPOSITION_ACTED);
  auto started = actuator_.all();
  ASSERT_EQ(started.size(), 1u);  // acme-ssh's block; not the shared ssh's two actions
  EXPECT_EQ(started[0].caller, "playbook:acme-ssh");
  EXPECT_EQ(started[0].tenants, std::vector<std::string>{"acme"});  // its fleet is acme's
  EXPECT_EQ(real_->getSignal(acme->signal_id)->record.tenant(), "acme");

  // beta opted into the shared ssh: it runs as beta's, on beta's hosts.
  auto beta = submit(ban("203.0.113.8"), "b1");
  ASSERT_TRUE(beta.ok()) << beta.status();
  started = actuator_.all();
  ASSERT_EQ(started.size(), 3u);
  EXPECT_EQ(started[1].caller, "playbook:ssh");
  EXPECT_EQ(started[1].tenants, std::vector<std::string>{"beta"});

  // The install's own hosts run the install's playbooks, as tenant default's.
  auto mine = submit(ban("203.0.113.9"), "h1");
  ASSERT_TRUE(mine.ok()) << mine.status();
  started = actuator_.all();
  ASSERT_EQ(started.size(), 5u);
  EXPECT_EQ(started[3].caller, "playbook:ssh");
  EXPECT_EQ(started[3].tenants, std::vector<std::string>{"default"});

  // Each signal's audit row is in its tenant.
  std::map<std::string, std::string> tenant_of;
  for (const AuditEntry& e : audit()) {
    if (e.action == "signal") tenant_of[e.reason] = e.tenant;
  }
  EXPECT_EQ(tenant_of[acme->signal_id], "acme");
  EXPECT_EQ(tenant_of[beta->signal_id], "beta");
  EXPECT_EQ(tenant_of[mine->signal_id], "default");
}

TEST_F(TenantSignalTest, RequireIncidentIsATenantsAndTheInstallsHoldsForTenantsWithoutTheirOwn) {
  EXPECT_EQ(service_->tenantRequiringIncident({"default", "acme", "beta", "gamma"}), "");
  std::ofstream(dir_ / "policies" / "tenants" / "acme" / "guardrails" / "automation.yaml")
      << "approval_for_isolate: [role=db]\nrequire_incident: true\n";
  ASSERT_TRUE(service_->reload().ok());
  EXPECT_EQ(service_->tenantRequiringIncident({"acme"}), "acme");
  EXPECT_EQ(service_->tenantRequiringIncident({"default", "beta", "gamma"}), "");
  EXPECT_EQ(service_->tenantRequiringIncident({"beta", "acme"}), "acme");
  // The install's guardrails are the defaults of every tenant without a file of its own.
  std::ofstream(dir_ / "policies" / "guardrails" / "automation.yaml")
      << "approval_for_isolate: [role=db]\nrequire_incident: true\n";
  std::ofstream(dir_ / "policies" / "tenants" / "acme" / "guardrails" / "automation.yaml")
      << "require_incident: false\n";
  ASSERT_TRUE(service_->reload().ok());
  EXPECT_EQ(service_->tenantRequiringIncident({"acme"}), "");
  EXPECT_EQ(service_->tenantRequiringIncident({"beta"}), "beta");
  EXPECT_EQ(service_->tenantRequiringIncident({"gamma"}), "gamma");  // no folder at all
  EXPECT_EQ(service_->tenantRequiringIncident({"default"}), "default");
  // A bad value is an error naming the file and line; what is in force stays.
  std::ofstream(dir_ / "policies" / "guardrails" / "automation.yaml") << "require_incident: yes\n";
  auto bad = service_->reload();
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.message()),
              HasSubstr("guardrails/automation.yaml:1: require_incident: invalid value \"yes\""));
  EXPECT_EQ(service_->tenantRequiringIncident({"default"}), "default");
}

TEST_F(TenantSignalTest, ATenantWithoutPlaybooksActsOnNothingAndAnIntegrationsSignalIsItsTenants) {
  auto gamma = deliver(ban("203.0.113.7"),
                       SignalDelivery{.delivered_by = "integration:siem", .tenant = "gamma"});
  ASSERT_TRUE(gamma.ok()) << gamma.status();
  EXPECT_EQ(gamma->disposition, v1::SIGNAL_DISPOSITION_NO_MATCH);
  EXPECT_TRUE(actuator_.all().empty());
  EXPECT_EQ(real_->getSignal(gamma->signal_id)->record.tenant(), "gamma");
  auto acme = deliver(ban("203.0.113.7"),
                      SignalDelivery{.delivered_by = "integration:acme-siem", .tenant = "acme"});
  ASSERT_TRUE(acme.ok()) << acme.status();
  ASSERT_EQ(actuator_.all().size(), 1u);
  EXPECT_EQ(actuator_.all()[0].caller, "playbook:acme-ssh");
}

TEST_F(TenantSignalTest, RateCapsAndIdempotencyKeysArePerTenant) {
  // acme's playbook takes 2 a minute: the third is suppressed...
  for (int i = 0; i < 3; ++i) {
    auto out = submit(ban("203.0.113." + std::to_string(10 + i)), "a1");
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->disposition,
              i < 2 ? v1::SIGNAL_DISPOSITION_ACTED : v1::SIGNAL_DISPOSITION_SUPPRESSED);
  }
  // ... and no other tenant's automation loses any of its room for it.
  auto mine = submit(ban("203.0.113.20"), "h1");
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_EQ(mine->disposition, v1::SIGNAL_DISPOSITION_ACTED);

  // The same key in two tenants: two signals, neither a duplicate of the other.
  auto first = submit(ban("203.0.113.30", "alert-1"), "h2");
  auto second = submit(ban("203.0.113.30", "alert-1"), "b1");
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(second->disposition, v1::SIGNAL_DISPOSITION_DUPLICATE);
  EXPECT_NE(first->signal_id, second->signal_id);
  EXPECT_EQ(submit(ban("203.0.113.30", "alert-1"), "b1")->disposition,
            v1::SIGNAL_DISPOSITION_DUPLICATE);
}

TEST_F(TenantSignalTest, ATenantListsAndDecidesItsOwnApprovalsOnly) {
  const std::string mine = alert();  // h3 of default, waiting for approval
  ASSERT_FALSE(mine.empty());
  v1::Signal s;
  s.set_source(v1::SIGNAL_SOURCE_ALERTMANAGER);
  s.set_rule("implant");
  s.set_host("a2");
  auto acme_signal =
      deliver(s, SignalDelivery{.delivered_by = "integration:acme-am", .tenant = "acme"});
  ASSERT_TRUE(acme_signal.ok()) << acme_signal.status();
  EXPECT_EQ(acme_signal->disposition, v1::SIGNAL_DISPOSITION_AWAITING_APPROVAL);

  const Caller acme_viewer = of("ann@acme", "acme", Role::kViewer);
  auto listed = service_->listApprovals(acme_viewer, false, 0);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->at(0).tenant(), "acme");
  EXPECT_EQ(listed->at(0).action().target(), "a2");
  const std::string theirs = listed->at(0).approval_id();
  // The install's viewer sees default's only; its admin with '*' sees both.
  ASSERT_EQ(service_->listApprovals(viewer_, false, 0)->size(), 1u);
  EXPECT_EQ(service_->listApprovals(viewer_, false, 0)->at(0).approval_id(), mine);
  Caller admin{.audit_name = "root", .is_operator = true, .role = Role::kAdmin};
  admin.tenants = {"acme", "default"};
  admin.all_tenants = true;
  EXPECT_EQ(service_->listApprovals(admin, false, 0)->size(), 2u);
  // Signals too.
  auto signals = service_->list(acme_viewer, 0, 0);
  ASSERT_TRUE(signals.ok()) << signals.status();
  ASSERT_EQ(signals->size(), 1u);
  EXPECT_EQ(signals->at(0).signal_id(), acme_signal->signal_id);

  // acme's approver: default's approval reads as unknown; its own runs, as acme's.
  const Caller acme_approver = of("amy@acme", "acme", Role::kApprover);
  auto refused = service_->approve(acme_approver, mine, "not yours");
  EXPECT_TRUE(absl::IsNotFound(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message(), "no approval \"" + mine + "\"");
  EXPECT_TRUE(absl::IsNotFound(service_->reject(acme_approver, mine, "no").status()));
  EXPECT_EQ(real_->getApproval(mine)->state(), v1::APPROVAL_STATE_PENDING);
  // An approver of acme's web hosts only does not cover a2 (role=db).
  Caller web_only = of("wes@acme", "acme", Role::kApprover);
  web_only.grants[0].hosts = {{"role", "web"}};
  auto narrow = service_->approve(web_only, theirs, "web only");
  EXPECT_TRUE(absl::IsPermissionDenied(narrow.status())) << narrow.status();
  EXPECT_THAT(std::string(narrow.status().message()), HasSubstr("not an approver on host a2"));
  auto approved = service_->approve(acme_approver, theirs, "INC-9");
  ASSERT_TRUE(approved.ok()) << approved.status();
  auto started = actuator_.all();
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].caller, "amy@acme");
  EXPECT_EQ(started[0].target, "a2");
  // The refusals and the decision are audited: the decision in acme, the refusal in the
  // refused caller's call's tenant.
  int acme_approve = 0;
  for (const AuditEntry& e : audit()) {
    if (e.action == "approve" && e.outcome == "ok") {
      EXPECT_EQ(e.tenant, "acme");
      ++acme_approve;
    }
  }
  EXPECT_EQ(acme_approve, 1);
}

TEST_F(TenantSignalTest, ASignalFromAnOperatorBelongsToTheCallsOneTenant) {
  std::promise<absl::StatusOr<SignalOutcome>> p;
  // Even the install's admin names one tenant: a signal across tenants is nobody's.
  Caller everywhere{.audit_name = "root",
                    .is_operator = true,
                    .role = Role::kAdmin,
                    .tenants = {"acme", "beta", "default"},
                    .all_tenants = true};
  service_->submitAsOperator(everywhere, ban("203.0.113.7"),
                             [&](absl::StatusOr<SignalOutcome> o) { p.set_value(std::move(o)); });
  auto out = p.get_future().get();
  EXPECT_TRUE(absl::IsInvalidArgument(out.status())) << out.status();
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("choose it with --tenant NAME"));

  std::promise<absl::StatusOr<SignalOutcome>> q;
  service_->submitAsOperator(of("pat", "acme", Role::kResponder), ban("203.0.113.7"),
                             [&](absl::StatusOr<SignalOutcome> o) { q.set_value(std::move(o)); });
  auto acme = q.get_future().get();
  ASSERT_TRUE(acme.ok()) << acme.status();
  EXPECT_EQ(real_->getSignal(acme->signal_id)->record.tenant(), "acme");
  ASSERT_EQ(actuator_.all().size(), 1u);
  EXPECT_EQ(actuator_.all()[0].caller, "playbook:acme-ssh");
}

TEST_F(TenantSignalTest, ReloadNamesEveryTenantProblemAndKeepsWhatIsInForce) {
  std::ofstream(dir_ / "policies" / "tenants" / "beta.yaml") << "playbooks: [nope]\n";
  std::ofstream(dir_ / "policies" / "tenants" / "acme.yaml") << "playbooks: [ssh]\n";
  fs::create_directories(dir_ / "policies" / "tenants" / "acme" / "playbooks");
  std::ofstream(dir_ / "policies" / "tenants" / "acme" / "playbooks" / "ssh.yaml")
      << "name: ssh\ndescription: d\nmatch: {source: fail2ban}\nactions: [{action: block}]\n";
  absl::Status s = service_->reload();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("tenants/beta.yaml:1: playbooks: unknown shared playbook \"nope\" "
                        "(shared: implant, ssh)"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("tenants/acme/playbooks/ssh.yaml:1: name: \"ssh\" is also a shared "
                        "playbook acme opts into (tenants/acme.yaml)"));
  EXPECT_EQ(service_->playbookCount(), 5u);  // the sets in force stay
}
}  // namespace
}  // namespace bulkhead::controller
