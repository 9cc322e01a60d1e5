// NetlinkTamperWatch against the real kernel, inside this process's private network namespace.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>

#include "agent/linux/nftables_firewall.h"
#include "agent/linux/tamper_watch.h"
#include "tests/kernel/private_netns.h"

namespace bulkhead::agent {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kRuleset = R"(table inet bulkhead {
  set block4 {
    type ipv4_addr
    flags interval
  }
  chain isolate_input {
    type filter hook input priority -310; policy accept;
    ip saddr @block4 drop
  }
}
)";

// Collects callbacks; the test thread waits on it.
class Inbox {
 public:
  void push(const TamperEvent& e) {
    std::lock_guard<std::mutex> l(mu_);
    events_.push_back(e);
    cv_.notify_all();
  }
  // Waits up to `timeout` for an event; nullopt on timeout.
  std::optional<TamperEvent> pop(milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, timeout, [&] { return !events_.empty(); })) return std::nullopt;
    TamperEvent e = events_.front();
    events_.pop_front();
    return e;
  }
  // Drops everything that arrives within `quiet`.
  void drain(milliseconds quiet) {
    while (pop(quiet)) {
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TamperEvent> events_;
};

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

class TamperWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BULKHEAD_REQUIRE_PRIVATE_NETNS();
    auto fw = NftablesFirewall::create();
    ASSERT_TRUE(fw.ok());
    fw_ = *std::move(fw);
    auto other = NftablesFirewall::create();  // plays the intruder / the other tool
    ASSERT_TRUE(other.ok());
    intruder_ = *std::move(other);
    ASSERT_TRUE(fw_->runRaw("flush ruleset").ok());
  }
  std::unique_ptr<NetlinkTamperWatch> watch(milliseconds backstop = milliseconds(0)) {
    NetlinkTamperWatch::Options o;
    o.debounce = milliseconds(20);
    o.backstop = backstop;
    auto w = NetlinkTamperWatch::create(o, [this](const TamperEvent& e) { inbox_.push(e); });
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }
  std::unique_ptr<NftablesFirewall> fw_;
  std::unique_ptr<NftablesFirewall> intruder_;
  Inbox inbox_;
};

TEST_F(TamperWatchTest, FlushRulesetFiresWithinBoundedTime) {
  auto w = watch();
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(fw_->apply(kRuleset).ok());
  auto own = inbox_.pop(milliseconds(1000));  // our own apply is visible too
  ASSERT_TRUE(own.has_value());
  EXPECT_TRUE(contains(own->kinds, "NEWTABLE"));
  inbox_.drain(milliseconds(100));

  auto t0 = Clock::now();
  ASSERT_TRUE(intruder_->runRaw("flush ruleset").ok());
  auto ev = inbox_.pop(milliseconds(1000));
  auto latency = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
  ASSERT_TRUE(ev.has_value()) << "no callback within 1 s of `flush ruleset`";
  EXPECT_EQ(ev->reason, TamperEvent::Reason::kTableChanged);
  EXPECT_TRUE(contains(ev->kinds, "DELTABLE"));
  EXPECT_GE(ev->messages, 1u);
  ASSERT_FALSE(ev->actors.empty());
  std::printf("flush ruleset -> callback: %lld us (debounce 20 ms); actor %s\n",
              static_cast<long long>(latency.count()), ev->actors[0].c_str());
}

TEST_F(TamperWatchTest, DeleteTableAndRuleEditsFire) {
  auto w = watch();
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(fw_->apply(kRuleset).ok());
  inbox_.drain(milliseconds(200));

  ASSERT_TRUE(intruder_->runRaw("add element inet bulkhead block4 { 10.77.1.1 }").ok());
  auto e1 = inbox_.pop(milliseconds(1000));
  ASSERT_TRUE(e1.has_value());
  EXPECT_TRUE(contains(e1->kinds, "NEWSETELEM"));

  ASSERT_TRUE(intruder_->runRaw("flush chain inet bulkhead isolate_input").ok());
  auto e2 = inbox_.pop(milliseconds(1000));
  ASSERT_TRUE(e2.has_value());
  EXPECT_TRUE(contains(e2->kinds, "DELRULE"));

  ASSERT_TRUE(intruder_->runRaw("delete table inet bulkhead").ok());
  auto e3 = inbox_.pop(milliseconds(1000));
  ASSERT_TRUE(e3.has_value());
  EXPECT_TRUE(contains(e3->kinds, "DELTABLE"));
}

TEST_F(TamperWatchTest, OtherTablesDoNotFire) {
  auto w = watch();
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(fw_->apply(kRuleset).ok());
  inbox_.drain(milliseconds(200));
  ASSERT_TRUE(intruder_
                  ->runRaw("add table inet docker\nadd chain inet docker c\n"
                           "add table ip bulkhead\n")
                  .ok());
  EXPECT_FALSE(inbox_.pop(milliseconds(300)).has_value());
}

TEST_F(TamperWatchTest, BackstopFiresWithoutEvents) {
  auto w = watch(milliseconds(100));
  ASSERT_NE(w, nullptr);
  auto ev = inbox_.pop(milliseconds(1000));
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->reason, TamperEvent::Reason::kBackstop);
}

TEST_F(TamperWatchTest, StopIsPromptAndFinal) {
  auto w = watch(milliseconds(50));
  ASSERT_NE(w, nullptr);
  auto t0 = Clock::now();
  w->stop();
  EXPECT_LT(Clock::now() - t0, milliseconds(500));
  inbox_.drain(milliseconds(10));
  EXPECT_FALSE(inbox_.pop(milliseconds(200)).has_value());
}

// What the agent's reconciler does with the watch: the callback posts, the reconciler thread
// re-reads the hash and re-applies on mismatch. The table is back well within a second.
TEST_F(TamperWatchTest, ReconcilerRestoresTableWithinASecond) {
  ASSERT_TRUE(fw_->apply(kRuleset).ok());
  auto expected = fw_->readBackHash();
  ASSERT_TRUE(expected.ok());
  auto w = watch();
  ASSERT_NE(w, nullptr);

  auto t0 = Clock::now();
  ASSERT_TRUE(intruder_->runRaw("flush ruleset").ok());
  bool restored = false;
  int tamper_events = 0;
  while (Clock::now() - t0 < milliseconds(1000)) {
    auto ev = inbox_.pop(milliseconds(50));
    if (!ev) continue;
    auto h = fw_->readBackHash();
    if (h.ok() && *h == *expected) {
      restored = true;  // our own re-apply, read back as expected
      break;
    }
    ++tamper_events;
    ASSERT_TRUE(fw_->apply(kRuleset).ok());
  }
  auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
  EXPECT_TRUE(restored);
  EXPECT_EQ(tamper_events, 1);
  auto h = fw_->readBackHash();
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, *expected);
  std::printf("flush ruleset -> table restored and verified: %lld us\n",
              static_cast<long long>(elapsed.count()));
}

}  // namespace
}  // namespace bulkhead::agent
