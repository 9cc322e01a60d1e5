// Blocks -> set elements, rules, incremental batches and the flow decision (pure).
#include "agent/core/blocks.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "agent/core/ruleset.h"

namespace bulkhead::agent {
namespace {

namespace v1 = bulkhead::v1;
constexpr int64_t kNow = 1'700'000'000'000;

v1::Block block(const std::string& cidr, int64_t expires = 0,
                v1::Direction dir = v1::DIRECTION_BOTH, v1::Protocol proto = v1::PROTOCOL_ANY,
                uint32_t port = 0) {
  v1::Block b;
  b.set_id("b-" + cidr);
  b.set_remote_cidr(cidr);
  b.set_expires_at_unix_ms(expires);
  b.set_direction(dir);
  b.set_protocol(proto);
  b.mutable_ports()->set_first(port);
  b.mutable_ports()->set_last(port);
  return b;
}

v1::DesiredState withBlocks(std::initializer_list<v1::Block> blocks) {
  v1::DesiredState s;
  s.set_generation(1);
  for (const auto& b : blocks) *s.add_blocks() = b;
  return s;
}

Flow flow(const char* local, uint16_t lport, const char* remote, uint16_t rport,
          bool forwarded = false, FlowProto proto = FlowProto::kTcp) {
  Flow f;
  f.family = strchr(local, ':') ? AF_INET6 : AF_INET;
  f.proto = proto;
  inet_pton(f.family, local, f.local_addr.data());
  inet_pton(f.family, remote, f.remote_addr.data());
  f.local_port = lport;
  f.remote_port = rport;
  f.forwarded = forwarded;
  return f;
}

TEST(Blocks, OverlappingPrefixesKeepTheirOwnExpiryInSeparateSets) {
  // The auto-merge pitfall: a /16 living 2 h inside a /8 living 1 h must keep its 2 h.
  auto s = withBlocks({block("10.0.0.0/8", kNow + 3'600'000), block("10.78.0.0/16", kNow + 7'200'000)});
  auto e = blockElements(s, kNow);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e.at("blk4_in_addr_8").at("10.0.0.0"), kNow + 3'600'000);
  EXPECT_EQ(e.at("blk4_in_addr_16").at("10.78.0.0"), kNow + 7'200'000);
  EXPECT_EQ(e.at("blk4_out_addr_16").at("10.78.0.0"), kNow + 7'200'000);
  std::string sets = renderBlockSets(e, kNow);
  EXPECT_NE(sets.find("10.78.0.0 timeout 7200000ms"), std::string::npos) << sets;
  EXPECT_NE(sets.find("10.0.0.0 timeout 3600000ms"), std::string::npos) << sets;
  EXPECT_NE(renderBlockRules(e, "input").find("ip saddr & 255.0.0.0 @blk4_in_addr_8 drop"),
            std::string::npos);
  EXPECT_EQ(renderBlockRules(e, "input").find("daddr"), std::string::npos);
  EXPECT_NE(renderBlockRules(e, "output").find("ip daddr & 255.255.0.0 @blk4_out_addr_16 drop"),
            std::string::npos);
  EXPECT_EQ(renderBlockRules(e, "forward").size(),
            renderBlockRules(e, "input").size() + renderBlockRules(e, "output").size());
}

TEST(Blocks, DuplicatesMergeWithTheLatestExpiryAndPermanentWins) {
  auto s = withBlocks({block("10.77.0.66", kNow + 1000), block("10.77.0.66", kNow + 5000)});
  EXPECT_EQ(blockElements(s, kNow).at("blk4_in_addr_32").at("10.77.0.66"), kNow + 5000);
  *s.add_blocks() = block("10.77.0.66", 0);
  EXPECT_EQ(blockElements(s, kNow).at("blk4_in_addr_32").at("10.77.0.66"), 0);
}

TEST(Blocks, ExpiredBlocksAreSkipped) {
  auto s = withBlocks({block("10.77.0.66", kNow), block("fd77::66", kNow + 1)});
  auto e = blockElements(s, kNow);
  EXPECT_EQ(e.count("blk4_in_addr_32"), 0u);
  EXPECT_EQ(e.at("blk6_out_addr_128").at("fd77::66"), kNow + 1);
  EXPECT_NE(renderBlockSets(e, kNow).find("fd77::66 timeout 1ms"), std::string::npos);
}

TEST(Blocks, PortProtoAndDirectionPickSetAndKey) {
  auto s = withBlocks({block("10.77.0.66", 0, v1::DIRECTION_IN, v1::PROTOCOL_TCP, 22),
                       block("fd77::/64", 0, v1::DIRECTION_OUT, v1::PROTOCOL_ANY, 53),
                       block("10.77.0.67", 0, v1::DIRECTION_IN, v1::PROTOCOL_UDP, 0)});
  auto e = blockElements(s, kNow);
  EXPECT_EQ(e.at("blk4_in_port_32").count("10.77.0.66 . 6 . 22"), 1u);
  EXPECT_EQ(e.at("blk6_out_port_64").count("fd77:: . 6 . 53"), 1u);
  EXPECT_EQ(e.at("blk6_out_port_64").count("fd77:: . 17 . 53"), 1u);
  EXPECT_EQ(e.at("blk4_in_proto_32").count("10.77.0.67 . 17"), 1u);
  EXPECT_EQ(e.count("blk4_out_port_32"), 0u);
  EXPECT_NE(renderBlockRules(e, "output").find(
                "ip6 daddr & ffff:ffff:ffff:ffff:: . meta l4proto . th dport @blk6_out_port_64 drop"),
            std::string::npos);
  EXPECT_NE(renderBlockRules(e, "input").find(
                "ip saddr . meta l4proto . th dport @blk4_in_port_32 drop"),
            std::string::npos);
}

TEST(Blocks, Validation) {
  EXPECT_TRUE(validateBlocks(withBlocks({block("10.77.0.66")})).ok());
  EXPECT_FALSE(validateBlocks(withBlocks({block("10.77.0.300")})).ok());
  EXPECT_FALSE(validateBlocks(withBlocks({block("10.77.0.66", 0, v1::DIRECTION_BOTH,
                                                v1::PROTOCOL_ICMP)})).ok());
  auto s = withBlocks({block("10.77.0.66")});
  s.mutable_blocks(0)->mutable_ports()->set_last(30);
  auto st = validateBlocks(s);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("blocks[0].ports"), absl::string_view::npos);
  s.mutable_blocks(0)->mutable_ports()->set_first(70000);
  s.mutable_blocks(0)->mutable_ports()->set_last(70000);
  EXPECT_FALSE(validateDesiredState(s).ok());
}

TEST(Blocks, IncrementalBatch) {
  auto a = blockElements(withBlocks({block("10.77.0.66"), block("10.77.0.67", kNow + 5000)}), kNow);
  auto b = blockElements(withBlocks({block("10.77.0.66"), block("10.77.0.68", kNow + 9000)}), kNow);
  auto batch = blockUpdateBatch(a, b, kNow + 1000);
  ASSERT_TRUE(batch.has_value());
  EXPECT_EQ(*batch,
            "delete element inet bulkhead blk4_in_addr_32 { 10.77.0.67 }\n"
            "delete element inet bulkhead blk4_out_addr_32 { 10.77.0.67 }\n"
            "add element inet bulkhead blk4_in_addr_32 { 10.77.0.68 timeout 8000ms }\n"
            "add element inet bulkhead blk4_out_addr_32 { 10.77.0.68 timeout 8000ms }\n");
  EXPECT_TRUE(blocksAdded(a, b));
  EXPECT_FALSE(blocksAdded(b, blockElements(withBlocks({block("10.77.0.66")}), kNow)));
  // 10.77.0.67 expired by now: the kernel dropped it, no delete (it would abort the batch).
  auto c = blockElements(withBlocks({block("10.77.0.66")}), kNow + 6000);
  EXPECT_EQ(*blockUpdateBatch(a, c, kNow + 6000), "");
  // A new prefix length needs a new set: rebuild.
  EXPECT_FALSE(blockUpdateBatch(a, blockElements(withBlocks({block("10.78.0.0/16")}), kNow), kNow));
  EXPECT_EQ(nextBlockExpiry(a, kNow), kNow + 5000);
  EXPECT_EQ(nextBlockExpiry(a, kNow + 5000), 0);
}

TEST(Blocks, FlowMatching) {
  BlockMatcher m(withBlocks({block("10.77.0.66"), block("10.77.0.70", kNow - 1),
                             block("10.77.1.0/24", 0, v1::DIRECTION_IN, v1::PROTOCOL_TCP, 22)}),
                 kNow);
  EXPECT_TRUE(m.blocked(flow("10.77.0.11", 22, "10.77.0.66", 40000)));
  EXPECT_TRUE(m.blocked(flow("10.77.0.11", 40000, "10.77.0.66", 80)));
  EXPECT_FALSE(m.blocked(flow("10.77.0.11", 22, "10.77.0.40", 40000)));
  EXPECT_FALSE(m.blocked(flow("10.77.0.11", 22, "10.77.0.70", 40000)));   // expired
  EXPECT_TRUE(m.blocked(flow("10.77.0.11", 22, "10.77.1.9", 40000)));
  EXPECT_FALSE(m.blocked(flow("10.77.0.11", 80, "10.77.1.9", 40000)));    // other port
  EXPECT_FALSE(m.blocked(flow("10.77.0.11", 40000, "10.77.1.9", 22)));    // we connect out
  EXPECT_FALSE(m.blocked(flow("10.77.0.11", 22, "10.77.1.9", 40000, false, FlowProto::kUdp)));
  // Forwarded: initiator in local_*; the attacker as initiator or as responder.
  EXPECT_TRUE(m.blocked(flow("10.77.0.66", 40000, "10.77.5.2", 8080, true)));
  EXPECT_TRUE(m.blocked(flow("10.77.5.2", 40000, "10.77.0.66", 8080, true)));
  EXPECT_TRUE(m.blocked(flow("10.77.1.9", 40000, "10.77.5.2", 22, true)));
  EXPECT_FALSE(m.blocked(flow("10.77.5.2", 40000, "10.77.1.9", 22, true)));
}

TEST(Blocks, RulesetCarriesBlocksAndABlockComesBeforeExemptions) {
  v1::DesiredState s = withBlocks({block("10.77.0.50", kNow + 3000)});
  auto* ep = s.add_controller_endpoints();
  ep->set_ip("10.77.0.1");
  ep->set_port(7443);
  s.mutable_isolation()->set_enabled(true);
  auto* ex = s.mutable_isolation()->add_exemptions();
  ex->set_direction(v1::DIRECTION_OUT);
  ex->set_protocol(v1::PROTOCOL_TCP);
  ex->set_remote_cidr("10.77.0.50/32");
  ex->mutable_ports()->set_first(5432);
  ex->mutable_ports()->set_last(5432);
  ASSERT_TRUE(validateDesiredState(s).ok());
  std::string text = renderRuleset(s, kNow);
  EXPECT_NE(text.find("10.77.0.50 timeout 3000ms"), std::string::npos) << text;
  auto drop = text.find("ip daddr @blk4_out_addr_32 drop");
  auto exempt = text.find("ip daddr . meta l4proto . th dport @exempt_out4 accept");
  ASSERT_NE(drop, std::string::npos);
  ASSERT_NE(exempt, std::string::npos);
  EXPECT_LT(drop, exempt);
  // After expiry the render leaves it out.
  EXPECT_EQ(renderRuleset(s, kNow + 3000).find("blk4"), std::string::npos);
}

// Controllers send "any" as UNSPECIFIED (see containment.proto): it renders exactly as ANY,
// in blocks (with and without a port) and in exemption rules.
TEST(Blocks, ProtocolUnspecifiedRendersAsAny) {
  auto state = [](v1::Protocol p) {
    v1::DesiredState s = withBlocks({block("10.77.0.50", 0, v1::DIRECTION_BOTH, p),
                                     block("10.77.0.51", 0, v1::DIRECTION_OUT, p, 53)});
    auto* ep = s.add_controller_endpoints();
    ep->set_ip("10.77.0.1");
    ep->set_port(7443);
    s.mutable_isolation()->set_enabled(true);
    auto* ex = s.mutable_isolation()->add_exemptions();
    ex->set_direction(v1::DIRECTION_OUT);
    ex->set_protocol(p);
    ex->set_remote_cidr("10.77.0.60/32");
    return s;
  };
  const v1::DesiredState any = state(v1::PROTOCOL_ANY);
  const v1::DesiredState unset = state(v1::PROTOCOL_UNSPECIFIED);
  ASSERT_TRUE(validateDesiredState(unset).ok());
  ASSERT_TRUE(validateBlocks(unset).ok());
  const std::string text = renderRuleset(unset, kNow);
  EXPECT_EQ(text, renderRuleset(any, kNow));
  EXPECT_NE(text.find("10.77.0.60"), std::string::npos) << text;   // the exemption is kept
  EXPECT_NE(text.find("10.77.0.51"), std::string::npos) << text;
  EXPECT_NE(renderRuleset(state(v1::PROTOCOL_TCP), kNow), text);   // the protocol matters
}

}  // namespace
}  // namespace bulkhead::agent
