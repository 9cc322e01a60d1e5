// NftablesFirewall against the real kernel, inside this process's private network namespace.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "agent/core/ruleset.h"
#include "agent/linux/nftables_firewall.h"
#include "agent/linux/ruleset_hash.h"
#include "tests/kernel/private_netns.h"

namespace bulkhead::agent {
namespace {

// A small table with a timeout set (remaining time must not leak into readBack), counters
// (must not either) and a drop policy on forward only (loopback traffic keeps working).
constexpr const char* kRuleset = R"(table inet bulkhead {
  set block4 {
    type ipv4_addr
    flags interval, timeout
    elements = { 10.77.9.0/24 timeout 1h, 10.77.8.1 timeout 30m }
  }
  set ctrl4 {
    type ipv4_addr . inet_service
    flags interval
    elements = { 10.77.0.1 . 8443 }
  }
  chain isolate_input {
    type filter hook input priority -310; policy accept;
    iif "lo" accept
    ip saddr @block4 counter drop
  }
  chain isolate_forward {
    type filter hook forward priority -310; policy drop;
  }
}
)";

// Valid syntax, but the kernel rejects it (jump to a chain that does not exist).
constexpr const char* kBrokenRuleset = R"(table inet bulkhead {
  chain isolate_input {
    type filter hook input priority -310; policy drop;
    jump nonexistent
  }
}
)";

std::unique_ptr<NftablesFirewall> makeFirewall() {
  auto fw = NftablesFirewall::create();
  EXPECT_TRUE(fw.ok()) << fw.status();
  return fw.ok() ? *std::move(fw) : nullptr;
}

class NftablesFirewallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BULKHEAD_REQUIRE_PRIVATE_NETNS();
    fw_ = makeFirewall();
    ASSERT_NE(fw_, nullptr);
    // Each test starts with an empty ruleset (of this private namespace only).
    ASSERT_TRUE(fw_->runRaw("flush ruleset").ok());
  }
  std::unique_ptr<NftablesFirewall> fw_;
};

TEST_F(NftablesFirewallTest, ReadBackOfAbsentTableIsNotFound) {
  auto r = fw_->readBack();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

TEST_F(NftablesFirewallTest, ApplyReadBackStableHashRemove) {
  ASSERT_TRUE(fw_->apply(kRuleset).ok());
  auto text1 = fw_->readBack();
  ASSERT_TRUE(text1.ok()) << text1.status();
  EXPECT_NE(text1->find("table inet bulkhead"), std::string::npos) << "[" << *text1 << "]";
  EXPECT_NE(text1->find("10.77.8.1 timeout 30m"), std::string::npos) << *text1;
  EXPECT_EQ(text1->find("expires"), std::string::npos) << *text1;
  EXPECT_EQ(text1->find("packets"), std::string::npos) << *text1;
  EXPECT_EQ(text1->find("handle"), std::string::npos) << *text1;

  // Time passes (timeouts count down), counters move: the text must not change.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto text2 = fw_->readBack();
  ASSERT_TRUE(text2.ok());
  EXPECT_EQ(*text1, *text2);

  // A second apply of the same text gives the same hash.
  ASSERT_TRUE(fw_->apply(kRuleset).ok());
  auto h2 = fw_->readBackHash();
  ASSERT_TRUE(h2.ok());
  EXPECT_EQ(rulesetHash(*text1), *h2);
  EXPECT_EQ(h2->size(), 64u);

  // apply() replaces, never merges: rules are not duplicated.
  auto text3 = fw_->readBack();
  ASSERT_TRUE(text3.ok());
  EXPECT_EQ(text3->find("counter drop"), text3->rfind("counter drop"));

  ASSERT_TRUE(fw_->remove().ok());
  EXPECT_EQ(fw_->readBack().status().code(), absl::StatusCode::kNotFound);
  // Removing an absent table is not an error.
  EXPECT_TRUE(fw_->remove().ok());
}

TEST_F(NftablesFirewallTest, BrokenBatchLeavesPreviousTableByteIdentical) {
  ASSERT_TRUE(fw_->apply(kRuleset).ok());
  auto before = fw_->readBack();
  ASSERT_TRUE(before.ok());

  absl::Status s = fw_->apply(kBrokenRuleset);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("nothing was changed"), std::string::npos) << s;
  // (libnftables points its error caret at the wrong line of a multi-line batch, so the
  // message is not checked for the chain name.)

  auto after = fw_->readBack();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*before, *after);

  // The transaction itself (not only the dry run) is atomic: run the broken replacement batch
  // directly, bypassing check().
  auto raw = fw_->runRaw(replacementBatch(kBrokenRuleset));
  ASSERT_FALSE(raw.ok());
  auto after_raw = fw_->readBack();
  ASSERT_TRUE(after_raw.ok());
  EXPECT_EQ(*before, *after_raw);

  // A syntax error too.
  EXPECT_FALSE(fw_->apply("table inet bulkhead {\n chain c { } }\n").ok());
  EXPECT_EQ(*before, *fw_->readBack());
}

TEST_F(NftablesFirewallTest, CheckChangesNothing) {
  ASSERT_TRUE(fw_->check(kRuleset).ok());
  EXPECT_EQ(fw_->readBack().status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fw_->check(kBrokenRuleset).ok());
}

TEST_F(NftablesFirewallTest, OtherTablesAreUntouched) {
  ASSERT_TRUE(fw_->runRaw("add table inet other\nadd chain inet other c\n").ok());
  ASSERT_TRUE(fw_->apply(kRuleset).ok());
  ASSERT_TRUE(fw_->remove().ok());
  auto other = fw_->runRaw("list table inet other");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_NE(other->find("chain c"), std::string::npos);
}

TEST_F(NftablesFirewallTest, IncrementalUpdateIsAtomic) {
  ASSERT_TRUE(fw_->apply(kRuleset).ok());
  ASSERT_TRUE(fw_->update("add element inet bulkhead block4 { 10.77.7.7 timeout 10m }\n").ok());
  auto text = fw_->readBack();
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("10.77.7.7 timeout 10m"), std::string::npos) << *text;

  // Second element is for a set that does not exist: the first must not be added either.
  absl::Status s = fw_->update(
      "add element inet bulkhead block4 { 10.77.6.6 timeout 10m }\n"
      "add element inet bulkhead nosuchset { 10.77.5.5 }\n");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(*text, *fw_->readBack());
}

// The real renderer (agent/core/ruleset.h): its output must pass, apply and read back stably.
TEST_F(NftablesFirewallTest, RendererOutputAppliesAndHashesStably) {
  bulkhead::v1::DesiredState state;
  state.set_generation(7);
  auto* ep = state.add_controller_endpoints();
  ep->set_ip("10.77.0.1");
  ep->set_port(8443);
  auto* ep6 = state.add_controller_endpoints();
  ep6->set_ip("fd77::1");
  ep6->set_port(8443);
  state.add_protected_cidrs("10.77.250.0/24");
  auto* iso = state.mutable_isolation();
  iso->set_enabled(true);
  auto* ex = iso->add_exemptions();
  ex->set_direction(bulkhead::v1::DIRECTION_OUT);
  ex->set_protocol(bulkhead::v1::PROTOCOL_TCP);
  ex->set_remote_cidr("10.77.0.50/32");
  ex->mutable_ports()->set_first(5432);
  ex->mutable_ports()->set_last(5432);
  auto* ex6 = iso->add_exemptions();
  ex6->set_direction(bulkhead::v1::DIRECTION_IN);
  ex6->set_protocol(bulkhead::v1::PROTOCOL_ANY);
  ex6->set_remote_cidr("fd77::50/128");
  ex6->mutable_ports()->set_first(22);
  ex6->mutable_ports()->set_last(22);
  ASSERT_TRUE(validateDesiredState(state).ok()) << validateDesiredState(state);

  for (bool isolated : {true, false}) {
    state.mutable_isolation()->set_enabled(isolated);
    const std::string text = renderRuleset(state, 1'000'000);
    ASSERT_TRUE(fw_->check(text).ok()) << fw_->check(text) << "\n" << text;
    ASSERT_TRUE(fw_->apply(text).ok());
    auto h1 = fw_->readBackHash();
    ASSERT_TRUE(h1.ok()) << h1.status();
    ASSERT_TRUE(fw_->apply(text).ok());
    auto h2 = fw_->readBackHash();
    ASSERT_TRUE(h2.ok());
    EXPECT_EQ(*h1, *h2) << "isolated=" << isolated;
    auto back = fw_->readBack();
    ASSERT_TRUE(back.ok());
    EXPECT_NE(back->find(isolated ? "policy drop" : "policy accept"), std::string::npos) << *back;
  }
  ASSERT_TRUE(fw_->remove().ok());
}

}  // namespace
}  // namespace bulkhead::agent
