// ReconcileWorker: ordering, coalescing, TTL wake-up, tamper re-check, on its own thread.
#include "agent/daemon/reconcile_worker.h"

#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include <gtest/gtest.h>

#include "fake_enforcement.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

int64_t wallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class RecordingSink final : public ReconcileSink {
 public:
  void onReport(const v1::StateReport& r, const EnforcedState&) override {
    std::lock_guard<std::mutex> lock(mu);
    reports.push_back(r);
    cv.notify_all();
  }
  void onTamper(const v1::TamperEvent& e, const EnforcedState&) override {
    std::lock_guard<std::mutex> lock(mu);
    tampers.push_back(e);
    cv.notify_all();
  }
  void onCommandResult(const v1::CommandResult& r) override {
    std::lock_guard<std::mutex> lock(mu);
    results.push_back(r);
    cv.notify_all();
  }
  template <typename P>
  bool waitFor(P pred, std::chrono::milliseconds t = 3000ms) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, t, pred);
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<v1::StateReport> reports;
  std::vector<v1::TamperEvent> tampers;
  std::vector<v1::CommandResult> results;
};

v1::DesiredState isolated(uint64_t gen, int64_t expires_at = 0) {
  v1::DesiredState s;
  s.set_generation(gen);
  auto* ep = s.add_controller_endpoints();
  ep->set_ip("10.77.0.2");
  ep->set_port(7443);
  s.mutable_isolation()->set_enabled(true);
  s.mutable_isolation()->set_expires_at_unix_ms(expires_at);
  return s;
}

class ReconcileWorkerTest : public ::testing::Test {
 protected:
  ReconcileWorkerTest() {
    char tmpl[] = "/tmp/bulkhead-worker-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    rec_ = std::make_unique<Reconciler>(ReconcilerOptions{dir_, {}, absl::OkStatus()}, &fw_,
                                        &killer_, wallMs);
  }
  ~ReconcileWorkerTest() override { fs::remove_all(dir_); }

  fs::path dir_;
  FakeFirewall fw_;
  FakeFlowKiller killer_;
  std::unique_ptr<Reconciler> rec_;
  RecordingSink sink_;
};

TEST_F(ReconcileWorkerTest, AppliesNewestStateAndAnswersPreviews) {
  ReconcileWorker w(rec_.get(), &sink_, 0ms);
  w.runSync([](Reconciler& r) { EXPECT_FALSE(r.restore().has_value()); });
  w.desiredState(isolated(3));
  ASSERT_TRUE(sink_.waitFor([&] { return !sink_.reports.empty(); }));
  EXPECT_TRUE(sink_.reports.back().ok());
  EXPECT_EQ(sink_.reports.back().enforced_generation(), 3u);
  w.preview("p-1", isolated(4));
  ASSERT_TRUE(sink_.waitFor([&] { return !sink_.results.empty(); }));
  EXPECT_EQ(sink_.results[0].command_id(), "p-1");
  EXPECT_TRUE(sink_.results[0].ok());
  // An older state arriving after a newer one is dropped in the queue or refused.
  w.desiredState(isolated(6));
  w.desiredState(isolated(5));
  ASSERT_TRUE(sink_.waitFor([&] {
    return !sink_.reports.empty() && sink_.reports.back().enforced_generation() == 6u;
  }));
}

TEST_F(ReconcileWorkerTest, TtlWakesTheWorkerAndReleases) {
  ReconcileWorker w(rec_.get(), &sink_, 0ms);
  w.desiredState(isolated(3, wallMs() + 300));
  ASSERT_TRUE(sink_.waitFor([&] { return sink_.reports.size() == 1; }));
  w.runSync([&](Reconciler&) { EXPECT_TRUE(fw_.present); });  // fw_ belongs to the worker
  ASSERT_TRUE(sink_.waitFor([&] { return sink_.reports.size() == 2; }, 3000ms));
  EXPECT_TRUE(sink_.reports[1].ok());
  EXPECT_EQ(sink_.reports[1].ruleset_hash(), "");
  w.runSync([&](Reconciler&) { EXPECT_FALSE(fw_.present); });
}

TEST_F(ReconcileWorkerTest, TamperEventsAndBackstopRestoreTheTable) {
  ReconcileWorker w(rec_.get(), &sink_, 200ms);
  w.desiredState(isolated(3));
  ASSERT_TRUE(sink_.waitFor([&] { return sink_.reports.size() == 1; }));
  w.runSync([&](Reconciler&) { fw_.tamperDelete(); });
  w.recheck("DELTABLE");
  ASSERT_TRUE(sink_.waitFor([&] { return sink_.tampers.size() == 1; }, 1000ms));
  EXPECT_TRUE(sink_.tampers[0].restored());
  // No event at all (a missed netlink message): the backstop finds it.
  w.runSync([&](Reconciler&) { fw_.tamperDelete(); });
  ASSERT_TRUE(sink_.waitFor([&] { return sink_.tampers.size() == 2; }, 2000ms));
  EXPECT_TRUE(sink_.tampers[1].restored());
  w.runSync([&](Reconciler&) { EXPECT_TRUE(fw_.present); });
}

}  // namespace
}  // namespace bulkhead::agent
