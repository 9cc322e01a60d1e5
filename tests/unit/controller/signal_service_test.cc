// SignalService: a real SQLite store (through the fault-injecting wrapper), a fake host
// directory and a fake actuator. What is recorded, audited and started, and that nothing is
// answered as recorded that was not.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include "controller/service/signals.h"
#include "controller/store/sqlite_store.h"
#include "tests/unit/controller/fake_clock.h"
#include "tests/unit/controller/faulty_store.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
namespace fs = std::filesystem;
using ::testing::HasSubstr;

class FakeDirectory final : public HostDirectory {
 public:
  std::vector<v1::HostSummary> listHosts(const Labels&) override {
    std::vector<v1::HostSummary> out;
    for (const char* id : {"h1", "h2", "h3"}) {
      v1::HostSummary h;
      h.set_host_id(id);
      h.set_hostname(id);
      (*h.mutable_labels())["role"] = "web";
      h.add_addresses(std::string("10.77.0.1") + id[1]);
      out.push_back(h);
    }
    return out;
  }
  std::optional<v1::HostStatus> getHost(const std::string&) override { return std::nullopt; }
  bool online(const std::string&) override { return true; }
};

// Records every start; answers OK at once.
class FakeActuator final : public SignalActuator {
 public:
  struct Started {
    std::string caller;
    ActionKind kind;
    std::string target;
    std::string reason;
  };
  void start(const Caller& caller, const PlannedAction& action, const std::string& reason,
             std::function<void(const absl::Status&, const std::string&)> done) override {
    {
      std::lock_guard lock(mu);
      started.push_back({caller.audit_name, action.kind, action.target(), reason});
    }
    done(absl::OkStatus(), "hosts 3 enforced");
  }
  std::vector<Started> all() {
    std::lock_guard lock(mu);
    return started;
  }
  std::mutex mu;
  std::vector<Started> started;
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
    SignalServiceOptions options{.policy_dir = (dir_ / "policies").string()};
    options.blocks.controller_ips = {"10.77.0.1"};
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
    std::promise<absl::StatusOr<SignalOutcome>> p;
    service_->submit(
        SignalDelivery{.delivered_by = "host:" + from_host, .reporting_host = from_host}, s,
        [&](absl::StatusOr<SignalOutcome> o) { p.set_value(std::move(o)); });
    return p.get_future().get();
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
  EXPECT_EQ(real_->listSignals(0, 10)->at(0).record.actions(0).outcome(), "done: hosts 3 enforced");
}

TEST_F(SignalServiceTest, AFailedCommitAnswersAnErrorAndStartsNothing) {
  faulty_->failNext("addSignal");
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

}  // namespace
}  // namespace bulkhead::controller
