// Pure block decisions: match parsing, guardrails, protected-CIDR file, state changes.
#include "controller/core/blocks.h"

#include <gtest/gtest.h>

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
constexpr int64_t kNow = 1'700'000'000'000;

BlockMatch match(const std::string& cidr, uint32_t port = 0,
                 v1::Protocol proto = v1::PROTOCOL_ANY,
                 v1::Direction dir = v1::DIRECTION_UNSPECIFIED) {
  auto m = parseBlockMatch(cidr, proto, port, dir);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

BlockGuardrails guardrails() {
  BlockGuardrails g;
  g.controller_ips = {"10.77.0.1", "fd77::1"};
  auto p = parseProtectedCidrs("protected.yaml",
                               "protected:\n  - cidr: 10.77.0.40/32\n    why: jump host\n");
  EXPECT_TRUE(p.ok()) << p.status();
  g.protected_cidrs = *p;
  return g;
}

std::string refusal(const std::string& cidr, bool yes = false) {
  auto s = checkBlockGuardrails(match(cidr), guardrails(), yes);
  return s.ok() ? "" : std::string(s.message());
}

TEST(ControllerBlocks, ParseMatchNamesTheFieldAtFault) {
  EXPECT_EQ(match("10.77.0.66").cidr.toString(), "10.77.0.66/32");
  EXPECT_EQ(match("10.77.0.66").direction, v1::DIRECTION_BOTH);
  auto bad = parseBlockMatch("10.77.0.300", v1::PROTOCOL_ANY, 0, v1::DIRECTION_BOTH);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("remote_cidr"), absl::string_view::npos);
  bad = parseBlockMatch("10.77.0.66", v1::PROTOCOL_ANY, 70000, v1::DIRECTION_BOTH);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("port: invalid value 70000"), absl::string_view::npos);
  bad = parseBlockMatch("10.77.0.66", v1::PROTOCOL_ICMP, 0, v1::DIRECTION_BOTH);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("protocol"), absl::string_view::npos);
}

TEST(ControllerBlocks, Guardrails) {
  EXPECT_EQ(refusal("10.77.0.66"), "");
  EXPECT_NE(refusal("127.0.0.1").find("loopback"), std::string::npos);
  EXPECT_NE(refusal("::1").find("loopback"), std::string::npos);
  EXPECT_NE(refusal("::ffff:127.0.0.1").find("loopback"), std::string::npos);
  EXPECT_NE(refusal("10.77.0.1").find("controller"), std::string::npos);
  EXPECT_NE(refusal("10.77.0.0/24").find("controller"), std::string::npos);
  EXPECT_NE(refusal("fd77::/64").find("controller"), std::string::npos);
  EXPECT_NE(refusal("10.77.0.40").find("protected"), std::string::npos);
  EXPECT_NE(refusal("10.77.0.40").find("jump host"), std::string::npos);
  // wide prefixes need yes (default: wider than /16 for v4, /48 for v6)
  EXPECT_NE(refusal("10.128.0.0/9").find("--yes"), std::string::npos);
  EXPECT_EQ(refusal("10.128.0.0/9", true), "");
  EXPECT_EQ(refusal("10.78.0.0/16"), "");
  EXPECT_NE(refusal("2001:db8::/32").find("--yes"), std::string::npos);
  EXPECT_NE(refusal("0.0.0.0/0", true).find("loopback"), std::string::npos);
}

TEST(ControllerBlocks, ProtectedFileErrorsNameTheLine) {
  auto p = parseProtectedCidrs("p.yaml", "protected:\n  - cidr: 10.77.0.300\n");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("p.yaml:2"), absl::string_view::npos) << p.status();
  p = parseProtectedCidrs("p.yaml", "protected:\n  - cidr: 10.77.0.4\n    colour: red\n");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("colour"), absl::string_view::npos);
  EXPECT_FALSE(parseProtectedCidrs("p.yaml", "other: 1\n").ok());
  EXPECT_TRUE(parseProtectedCidrs("p.yaml", "").ok());
}

TEST(ControllerBlocks, AddReplaceRemove) {
  std::vector<v1::Endpoint> eps(1);
  eps[0].set_ip("10.77.0.1");
  eps[0].set_port(7443);
  v1::DesiredState s;
  s.set_generation(4);
  auto a = makeBlock(match("10.77.0.66"), "b1", kNow + 1000, "INC", "admin", kNow);
  auto s1 = withBlock(s, a, kNow, eps);
  EXPECT_EQ(s1.generation(), 5u);
  ASSERT_EQ(s1.blocks_size(), 1);
  EXPECT_EQ(s1.controller_endpoints_size(), 1);
  // same match: replaced (new ttl), not duplicated
  auto a2 = makeBlock(match("10.77.0.66"), "b2", 0, "INC-2", "admin", kNow);
  auto s2 = withBlock(s1, a2, kNow, eps);
  ASSERT_EQ(s2.blocks_size(), 1);
  EXPECT_EQ(s2.blocks(0).id(), "b2");
  // other port: a second block
  auto s3 = withBlock(s2, makeBlock(match("10.77.0.66", 22), "b3", 0, "x", "admin", kNow), kNow,
                      eps);
  EXPECT_EQ(s3.blocks_size(), 2);
  auto s4 = withoutBlock(s3, match("10.77.0.66"), kNow, eps);
  ASSERT_TRUE(s4.has_value());
  ASSERT_EQ(s4->blocks_size(), 1);
  EXPECT_EQ(s4->blocks(0).id(), "b3");
  EXPECT_EQ(s4->generation(), s3.generation() + 1);
  EXPECT_FALSE(withoutBlock(*s4, match("10.77.0.67"), kNow, eps).has_value());
  // expired blocks are dropped on the next change and cannot be unblocked
  auto s5 = withBlock(s, a, kNow, eps);
  EXPECT_FALSE(withoutBlock(s5, match("10.77.0.66"), kNow + 1000, eps).has_value());
}

TEST(ControllerBlocks, MissingFleetBlocks) {
  v1::DesiredState s;
  std::vector<v1::Block> fleet = {makeBlock(match("10.77.0.66"), "f1", 0, "x", "a", kNow),
                                  makeBlock(match("10.77.0.67"), "f2", kNow + 5, "x", "a", kNow)};
  EXPECT_EQ(missingFleetBlocks(s, fleet, kNow).size(), 2u);
  *s.add_blocks() = fleet[0];
  ASSERT_EQ(missingFleetBlocks(s, fleet, kNow).size(), 1u);
  EXPECT_EQ(missingFleetBlocks(s, fleet, kNow)[0].id(), "f2");
  EXPECT_TRUE(missingFleetBlocks(s, fleet, kNow + 5).empty());   // f2 expired
}

TEST(ControllerBlocks, ProtocolUnspecifiedIsAnyAndAgentsGetAnyAsUnspecified) {
  EXPECT_EQ(match("10.77.0.66", 0, v1::PROTOCOL_UNSPECIFIED).protocol, v1::PROTOCOL_ANY);
  v1::Block stored;   // a block written before PROTOCOL_ANY existed
  stored.set_remote_cidr("10.77.0.66/32");
  EXPECT_TRUE(sameMatch(stored, match("10.77.0.66")));
  EXPECT_FALSE(sameMatch(stored, match("10.77.0.66", 0, v1::PROTOCOL_TCP)));

  v1::DesiredState s;
  *s.add_blocks() = stored;
  s.add_blocks()->set_protocol(v1::PROTOCOL_UDP);
  s.mutable_isolation()->add_exemptions()->set_protocol(v1::PROTOCOL_UNSPECIFIED);
  s.mutable_isolation()->add_exemptions()->set_protocol(v1::PROTOCOL_ICMP);
  readUnsetProtocolsAsAny(s);
  EXPECT_EQ(s.blocks(0).protocol(), v1::PROTOCOL_ANY);
  EXPECT_EQ(s.blocks(1).protocol(), v1::PROTOCOL_UDP);
  EXPECT_EQ(s.isolation().exemptions(0).protocol(), v1::PROTOCOL_ANY);
  EXPECT_EQ(s.isolation().exemptions(1).protocol(), v1::PROTOCOL_ICMP);

  v1::DesiredState wire = agentWireState(s);
  EXPECT_EQ(wire.blocks(0).protocol(), v1::PROTOCOL_UNSPECIFIED);
  EXPECT_EQ(wire.blocks(1).protocol(), v1::PROTOCOL_UDP);
  EXPECT_EQ(wire.isolation().exemptions(0).protocol(), v1::PROTOCOL_UNSPECIFIED);
  EXPECT_EQ(wire.isolation().exemptions(1).protocol(), v1::PROTOCOL_ICMP);
  EXPECT_EQ(s.blocks(0).protocol(), v1::PROTOCOL_ANY);   // the controller's copy is unchanged
}

}  // namespace
}  // namespace bulkhead::controller
