// Block sets against the real kernel, in this process's private network namespace: the
// rendered sets accept overlapping prefixes with their own timeouts (no auto-merge), element
// batches add and delete incrementally, and the kernel expires elements by itself.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "agent/core/blocks.h"
#include "agent/core/ruleset.h"
#include "agent/linux/nftables_firewall.h"
#include "common/format.h"
#include "tests/kernel/private_netns.h"

namespace bulkhead::agent {
namespace {

namespace v1 = bulkhead::v1;

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

v1::Block block(const std::string& cidr, int64_t expires, v1::Protocol proto = v1::PROTOCOL_ANY,
                uint32_t port = 0) {
  v1::Block b;
  b.set_remote_cidr(cidr);
  b.set_expires_at_unix_ms(expires);
  b.set_protocol(proto);
  b.mutable_ports()->set_first(port);
  b.mutable_ports()->set_last(port);
  return b;
}

class BlocksKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BULKHEAD_REQUIRE_PRIVATE_NETNS();
    auto fw = NftablesFirewall::create();
    ASSERT_TRUE(fw.ok()) << fw.status();
    fw_ = *std::move(fw);
  }
  std::string list(const std::string& set) {
    auto r = fw_->runRaw("list set inet bulkhead " + set);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : "";
  }
  std::unique_ptr<NftablesFirewall> fw_;
};

TEST_F(BlocksKernelTest, OverlappingPrefixesKeepTheirOwnTimeouts) {
  const int64_t now = nowMs();
  v1::DesiredState s;
  *s.add_blocks() = block("10.0.0.0/8", now + 3'600'000);
  *s.add_blocks() = block("10.78.0.0/16", now + 7'200'000);
  *s.add_blocks() = block("10.78.0.5", 0, v1::PROTOCOL_TCP, 22);
  *s.add_blocks() = block("fd77::/16", now + 60'000);
  *s.add_blocks() = block("fd77::66", now + 60'000);
  ASSERT_TRUE(validateDesiredState(s).ok());
  ASSERT_TRUE(fw_->apply(renderRuleset(s, now)).ok());
  // The pitfall was a /16 merged into the /8, losing its 2 h: here each keeps its own.
  EXPECT_NE(list("blk4_in_addr_8").find("10.0.0.0 timeout 1h"), std::string::npos);
  EXPECT_NE(list("blk4_in_addr_16").find("10.78.0.0 timeout 2h"), std::string::npos);
  EXPECT_NE(list("blk4_out_port_32").find("10.78.0.5 . tcp . 22"), std::string::npos);
  EXPECT_NE(list("blk6_in_addr_16").find("fd77::"), std::string::npos);
  EXPECT_NE(list("blk6_in_addr_128").find("fd77::66"), std::string::npos);
  // The masked lookup matches addresses inside the prefix (nft get element on a hash set
  // takes the masked key: the rule does the masking, so check the key the rule would build).
  auto got = fw_->runRaw("get element inet bulkhead blk4_in_addr_16 { 10.78.0.0 }");
  EXPECT_TRUE(got.ok()) << got.status();
}

TEST_F(BlocksKernelTest, IncrementalBatchesAndKernelExpiry) {
  const int64_t now = nowMs();
  v1::DesiredState a;
  *a.add_blocks() = block("10.77.0.66", 0);
  ASSERT_TRUE(fw_->apply(renderRuleset(a, now)).ok());
  v1::DesiredState b = a;
  *b.add_blocks() = block("10.77.0.67", now + 400);
  for (int i = 0; i < 100; ++i) *b.add_blocks() = block(fmt::format("10.77.3.{}", i), 0);
  auto batch = blockUpdateBatch(blockElements(a, now), blockElements(b, now), now);
  ASSERT_TRUE(batch.has_value());
  ASSERT_TRUE(fw_->update(*batch).ok()) << *batch;
  EXPECT_NE(list("blk4_in_addr_32").find("10.77.0.67"), std::string::npos);
  EXPECT_NE(list("blk4_in_addr_32").find("10.77.3.99"), std::string::npos);
  // Remove one, keep the rest: a delete batch.
  v1::DesiredState c = b;
  c.mutable_blocks()->RemoveLast();
  auto del = blockUpdateBatch(blockElements(b, now), blockElements(c, now), now);
  ASSERT_TRUE(del.has_value());
  ASSERT_TRUE(fw_->update(*del).ok()) << *del;
  EXPECT_EQ(list("blk4_in_addr_32").find("10.77.3.99"), std::string::npos);
  // The kernel expires 10.77.0.67 by itself (no agent involved).
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  EXPECT_EQ(list("blk4_in_addr_32").find("10.77.0.67"), std::string::npos);
  EXPECT_NE(list("blk4_in_addr_32").find("10.77.0.66"), std::string::npos);
  // After expiry the diff does not delete the expired element (that would abort the batch).
  auto after = blockUpdateBatch(blockElements(c, now), blockElements(a, nowMs()), nowMs());
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->find("10.77.0.67"), std::string::npos);
  EXPECT_TRUE(fw_->update(*after).ok()) << *after;
  // A batch that deletes a missing element fails as a whole and changes nothing.
  EXPECT_FALSE(fw_->update("add element inet bulkhead blk4_in_addr_32 { 10.77.9.9 }\n"
                           "delete element inet bulkhead blk4_in_addr_32 { 10.77.9.8 }\n")
                   .ok());
  EXPECT_EQ(list("blk4_in_addr_32").find("10.77.9.9"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::agent
