// The controller's receiving end of AgentMessage.signal: a real agent stream over loopback
// mTLS, a fake SignalIntake behind it.
#include <deque>
#include <mutex>

#include "controller/rpc/agent_stream.h"
#include "controller/service/signal_intake.h"
#include "tests/unit/controller/server_harness.h"

namespace bulkhead::controller {
namespace {

using namespace bulkhead::controller::testing;
namespace v1 = bulkhead::v1;

// Records every submit. Answers at once with `answer` unless `hold` is set: then keeps the
// callbacks for the test to run.
class FakeSignalIntake final : public SignalIntake {
 public:
  void submit(SignalDelivery from, v1::Signal signal, SignalDone done) override {
    std::unique_lock lock(mu);
    deliveries.push_back(from);
    signals.push_back(signal);
    if (hold) {
      held.push_back(std::move(done));
      return;
    }
    auto answer_now = answer;
    lock.unlock();
    done(answer_now);
  }
  size_t submitted() {
    std::lock_guard lock(mu);
    return signals.size();
  }

  std::mutex mu;
  std::vector<SignalDelivery> deliveries;
  std::vector<v1::Signal> signals;
  bool hold = false;
  std::deque<SignalDone> held;
  absl::StatusOr<SignalOutcome> answer =
      SignalOutcome{"sig-1", "default", v1::SIGNAL_DISPOSITION_ACTED, {}};
};

v1::AgentMessage report(uint64_t id, const std::string& ip = "203.0.113.7") {
  v1::AgentMessage m;
  auto* r = m.mutable_signal();
  r->set_report_id(id);
  r->mutable_signal()->set_source(v1::SIGNAL_SOURCE_FAIL2BAN);
  r->mutable_signal()->set_rule("sshd");
  r->mutable_signal()->add_addresses(ip);
  return m;
}

v1::SignalReceipt receipt(FakeAgent& a) {
  v1::ControllerMessage m;
  EXPECT_TRUE(a.readUntil(v1::ControllerMessage::kSignalReceipt, &m));
  return m.signal_receipt();
}

class AgentSignalTest : public ServerTest {
 protected:
  void configure(ServerOptions& o) override { o.fleet.signals = &intake_; }
  FakeSignalIntake intake_;
};

TEST_F(AgentSignalTest, SubmitsAsTheCertificatesHostAndAnswersWithTheReceipt) {
  auto a = online("web-01");
  v1::AgentMessage m = report(41);
  m.mutable_signal()->mutable_signal()->set_host("db-01");  // a claim about another host
  ASSERT_TRUE(a->write(m));
  v1::SignalReceipt r = receipt(*a);
  EXPECT_EQ(r.report_id(), 41u);
  EXPECT_EQ(r.signal_id(), "sig-1");
  EXPECT_EQ(r.disposition(), v1::SIGNAL_DISPOSITION_ACTED);
  EXPECT_EQ(r.error(), "");
  std::lock_guard lock(intake_.mu);
  ASSERT_EQ(intake_.signals.size(), 1u);
  EXPECT_EQ(intake_.deliveries[0].delivered_by, "host:web-01");
  EXPECT_EQ(intake_.deliveries[0].reporting_host, "web-01");
  EXPECT_EQ(intake_.signals[0].host(), "web-01");
  EXPECT_EQ(intake_.signals[0].rule(), "sshd");
  ASSERT_EQ(intake_.signals[0].addresses_size(), 1);
  EXPECT_EQ(intake_.signals[0].addresses(0), "203.0.113.7");
}

TEST_F(AgentSignalTest, IntakeRefusalBecomesAnErrorReceipt) {
  intake_.answer = absl::InvalidArgumentError("signal.addresses[0]: not an address");
  auto a = online("web-01");
  ASSERT_TRUE(a->write(report(7, "bogus")));
  v1::SignalReceipt r = receipt(*a);
  EXPECT_EQ(r.report_id(), 7u);
  EXPECT_EQ(r.signal_id(), "");
  EXPECT_EQ(r.error(), "signal.addresses[0]: not an address");
}

TEST_F(AgentSignalTest, OversizedSignalsAreRefusedBeforeTheIntake) {
  auto a = online("web-01");
  v1::AgentMessage many = report(1);
  for (int i = 0; i < kMaxSignalAddresses; ++i) {
    many.mutable_signal()->mutable_signal()->add_addresses(fmt::format("198.51.100.{}", i));
  }
  ASSERT_TRUE(a->write(many));  // 65 addresses
  v1::SignalReceipt r = receipt(*a);
  EXPECT_EQ(r.report_id(), 1u);
  EXPECT_NE(r.error().find("signal.addresses: 65 addresses, at most 64"), std::string::npos)
      << r.error();
  v1::AgentMessage long_rule = report(2);
  long_rule.mutable_signal()->mutable_signal()->set_rule(std::string(kMaxSignalRuleBytes + 1, 'r'));
  ASSERT_TRUE(a->write(long_rule));
  r = receipt(*a);
  EXPECT_EQ(r.report_id(), 2u);
  EXPECT_NE(r.error().find("signal.rule: 257 bytes"), std::string::npos) << r.error();
  // Exactly at the limits is fine.
  v1::AgentMessage at_limit = report(3);
  at_limit.mutable_signal()->mutable_signal()->set_rule(std::string(kMaxSignalRuleBytes, 'r'));
  ASSERT_TRUE(a->write(at_limit));
  r = receipt(*a);
  EXPECT_EQ(r.report_id(), 3u);
  EXPECT_EQ(r.error(), "");
  EXPECT_EQ(intake_.submitted(), 1u);
}

TEST_F(AgentSignalTest, ReceiptsFollowTheIntakesOrderAndBoundInFlight) {
  intake_.hold = true;
  auto a = online("web-01");
  for (uint64_t id = 1; id <= static_cast<uint64_t>(kMaxSignalsInFlight); ++id)
    ASSERT_TRUE(a->write(report(id)));
  ASSERT_TRUE(
      eventually([&] { return intake_.submitted() == static_cast<size_t>(kMaxSignalsInFlight); }));
  ASSERT_TRUE(a->write(report(1000)));  // one more than the intake holds: refused at once
  v1::SignalReceipt r = receipt(*a);
  EXPECT_EQ(r.report_id(), 1000u);
  EXPECT_NE(r.error().find("too many signals in flight"), std::string::npos) << r.error();
  // The intake answers the second one first, from another thread.
  SignalDone second;
  {
    std::lock_guard lock(intake_.mu);
    second = std::move(intake_.held[1]);
  }
  std::thread([&] {
    second(SignalOutcome{"sig-2", "default", v1::SIGNAL_DISPOSITION_DUPLICATE, {}});
  }).join();
  r = receipt(*a);
  EXPECT_EQ(r.report_id(), 2u);
  EXPECT_EQ(r.signal_id(), "sig-2");
  EXPECT_EQ(r.disposition(), v1::SIGNAL_DISPOSITION_DUPLICATE);
  // A slot is free again: the next report reaches the intake.
  ASSERT_TRUE(a->write(report(1001)));
  EXPECT_TRUE(eventually(
      [&] { return intake_.submitted() == static_cast<size_t>(kMaxSignalsInFlight) + 1; }));
}

TEST_F(AgentSignalTest, AnswerAfterTheStreamEndedIsDropped) {
  intake_.hold = true;
  auto a = online("web-01");
  ASSERT_TRUE(a->write(report(5)));
  ASSERT_TRUE(eventually([&] { return intake_.submitted() == 1; }));
  EXPECT_TRUE(a->finish().ok());
  EXPECT_TRUE(eventually([&] { return !listedOnline("web-01"); }));
  SignalDone done;
  {
    std::lock_guard lock(intake_.mu);
    done = std::move(intake_.held[0]);
  }
  done(SignalOutcome{
      "sig-5", "default", v1::SIGNAL_DISPOSITION_NO_MATCH, {}});  // nothing to write to
  // The server is still fine: a new stream of the same host gets its receipts.
  intake_.hold = false;
  auto b = online("web-01");
  ASSERT_TRUE(b->write(report(6)));
  EXPECT_EQ(receipt(*b).report_id(), 6u);
}

TEST_F(ServerTest, TheServersOwnSignalServiceRecordsAnAgentsSignal) {
  // No intake in the options: the server wires its SignalService (no playbooks here).
  auto a = online("web-01");
  ASSERT_TRUE(a->write(report(9)));
  v1::ControllerMessage m;
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kSignalReceipt, &m));
  EXPECT_EQ(m.signal_receipt().report_id(), 9u);
  EXPECT_EQ(m.signal_receipt().error(), "");
  EXPECT_EQ(m.signal_receipt().disposition(), v1::SIGNAL_DISPOSITION_NO_MATCH);
  ASSERT_FALSE(m.signal_receipt().signal_id().empty());
  auto rows = store_->listSignals(0, 10);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  const v1::SignalRecord& r = (*rows)[0].record;
  EXPECT_EQ(r.signal_id(), m.signal_receipt().signal_id());
  EXPECT_EQ(r.delivered_by(), "host:web-01");
  EXPECT_EQ(r.signal().host(), "web-01");  // from the certificate
  // The same report again is a duplicate of the first, nothing recorded twice.
  ASSERT_TRUE(a->write(report(10)));
  ASSERT_TRUE(a->readUntil(v1::ControllerMessage::kSignalReceipt, &m));
  EXPECT_EQ(m.signal_receipt().disposition(), v1::SIGNAL_DISPOSITION_DUPLICATE);
  EXPECT_EQ(m.signal_receipt().signal_id(), r.signal_id());
  EXPECT_EQ(store_->listSignals(0, 10)->size(), 1u);
  // The stream stays up.
  ASSERT_TRUE(a->heartbeat());
  EXPECT_TRUE(listedOnline("web-01"));
}

}  // namespace
}  // namespace bulkhead::controller
