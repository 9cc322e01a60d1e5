// Golden, property and decision tests for agent/core/ruleset.
// Regenerate the golden files with: UPDATE_GOLDEN=1 ./ruleset_test (then review the diff).
#include "agent/core/ruleset.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common/format.h"
#include "common/parse.h"

namespace bulkhead::agent {
namespace {

namespace v1 = bulkhead::v1;

constexpr int64_t kNow = 1'700'000'000'000;

// ---- helpers ----------------------------------------------------------------------------

v1::ExemptionRule rule(v1::Direction dir, v1::Protocol proto, const std::string& cidr,
                       uint32_t first = 0, uint32_t last = 0, const std::string& set = "s") {
  v1::ExemptionRule r;
  r.set_direction(dir);
  r.set_protocol(proto);
  r.set_remote_cidr(cidr);
  r.mutable_ports()->set_first(first);
  r.mutable_ports()->set_last(last);
  r.set_set_name(set);
  return r;
}

v1::DesiredState labState(bool isolated) {
  v1::DesiredState s;
  s.set_generation(7);
  auto* e4 = s.add_controller_endpoints();
  e4->set_ip("10.77.0.1");
  e4->set_port(7443);
  auto* e6 = s.add_controller_endpoints();
  e6->set_ip("fd77::1");
  e6->set_port(7443);
  s.mutable_isolation()->set_enabled(isolated);
  s.mutable_isolation()->set_reason("INC-42");
  return s;
}

v1::DesiredState exemptionsState() {
  v1::DesiredState s = labState(true);
  auto* iso = s.mutable_isolation();
  iso->add_exemption_sets("postgres-replication");
  iso->add_exemption_sets("ir-jump-host");
  auto add = [&](v1::ExemptionRule r) { *iso->add_exemptions() = std::move(r); };
  add(rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.77.0.50/32", 5432, 5432));
  add(rule(v1::DIRECTION_OUT, v1::PROTOCOL_TCP, "10.77.0.50/32", 5432, 5432));
  add(rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "fd77::50/128", 5432, 5432));
  add(rule(v1::DIRECTION_OUT, v1::PROTOCOL_TCP, "fd77::50/128", 5432, 5432));
  add(rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.77.0.40/32", 22, 22));
  add(rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "fd77::40/128", 22, 22));
  add(rule(v1::DIRECTION_IN, v1::PROTOCOL_ICMP, "10.77.0.40/32"));
  add(rule(v1::DIRECTION_IN, v1::PROTOCOL_ICMP, "fd77::40/128"));
  // A port range, a duplicate, and overlaps that an interval set would reject.
  add(rule(v1::DIRECTION_OUT, v1::PROTOCOL_UDP, "10.77.0.0/24", 6000, 6010));
  add(rule(v1::DIRECTION_OUT, v1::PROTOCOL_UDP, "10.77.0.0/24", 6005, 6020));
  add(rule(v1::DIRECTION_OUT, v1::PROTOCOL_UDP, "10.77.0.50/32", 6008, 6030));
  add(rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.77.0.50/32", 5432, 5432));
  // proto any, every port, both directions; nested inside a wider icmp exemption.
  add(rule(v1::DIRECTION_BOTH, v1::PROTOCOL_ANY, "fd77::50/128"));
  add(rule(v1::DIRECTION_OUT, v1::PROTOCOL_ICMP, "fd77::/16"));
  s.add_protected_cidrs("10.77.200.0/24");
  s.add_protected_cidrs("fd77:200::/64");
  return s;
}

std::string goldenDir() { return BULKHEAD_RULESET_TESTDATA; }

// Compares `text` with testdata/NAME.nft, or rewrites the file when UPDATE_GOLDEN=1.
void expectGolden(const std::string& name, const std::string& text) {
  const std::string path = goldenDir() + "/" + name + ".nft";
  const char* update = std::getenv("UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
    GTEST_SKIP() << "rewrote " << path;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in.good()) << "missing golden " << path << " (run with UPDATE_GOLDEN=1)";
  std::stringstream golden;
  golden << in.rdbuf();
  EXPECT_EQ(text, golden.str()) << "golden " << path
                                << " differs; if intended, regenerate with UPDATE_GOLDEN=1";
}

Flow flow(FlowProto proto, const std::string& local, uint16_t lport, const std::string& remote,
          uint16_t rport) {
  Flow f;
  f.family = local.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  f.proto = proto;
  EXPECT_EQ(inet_pton(f.family, local.c_str(), f.local_addr.data()), 1) << local;
  EXPECT_EQ(inet_pton(f.family, remote.c_str(), f.remote_addr.data()), 1) << remote;
  f.local_port = lport;
  f.remote_port = rport;
  return f;
}

// Lines of one chain's body (between "chain NAME {" and its closing brace).
std::vector<std::string> chainLines(const std::string& text, const std::string& name) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line == "  chain " + name + " {") {
      inside = true;
    } else if (inside && line == "  }") {
      break;
    } else if (inside) {
      out.push_back(line.substr(line.find_first_not_of(' ')));
    }
  }
  return out;
}

// Elements of one set, as written.
std::vector<std::string> setElements(const std::string& text, const std::string& name) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  bool inside = false, elements = false;
  while (std::getline(in, line)) {
    if (line == "  set " + name + " {") {
      inside = true;
    } else if (inside && line == "  }") {
      break;
    } else if (inside && line == "    elements = {") {
      elements = true;
    } else if (elements && line == "    }") {
      elements = false;
    } else if (elements) {
      std::string e = line.substr(line.find_first_not_of(' '));
      if (!e.empty() && e.back() == ',') e.pop_back();
      out.push_back(e);
    }
  }
  return out;
}

// ---- golden ------------------------------------------------------------------------------

TEST(RenderRulesetGolden, NotIsolated) {
  expectGolden("not_isolated", renderRuleset(labState(false), kNow));
}

TEST(RenderRulesetGolden, IsolatedControllerOnly) {
  expectGolden("isolated_controller_only", renderRuleset(labState(true), kNow));
}

TEST(RenderRulesetGolden, IsolatedWithExemptions) {
  expectGolden("isolated_exemptions", renderRuleset(exemptionsState(), kNow));
}

TEST(RenderRulesetGolden, ExpiredTtlRendersAsNotIsolated) {
  v1::DesiredState s = exemptionsState();
  s.mutable_isolation()->set_expires_at_unix_ms(kNow);
  const std::string text = renderRuleset(s, kNow);
  expectGolden("expired_ttl", text);
  v1::DesiredState released = s;
  released.mutable_isolation()->set_enabled(false);
  EXPECT_EQ(text, renderRuleset(released, kNow));
}

// ---- rendering details ---------------------------------------------------------------------

TEST(RenderRuleset, TtlNotYetExpiredIsIsolated) {
  v1::DesiredState s = exemptionsState();
  s.mutable_isolation()->set_expires_at_unix_ms(kNow + 1);
  EXPECT_EQ(renderRuleset(s, kNow), renderRuleset(exemptionsState(), kNow));
  EXPECT_TRUE(isolationActive(s, kNow));
  EXPECT_FALSE(isolationActive(s, kNow + 1));
}

TEST(RenderRuleset, BatchReplacesOurTableAtomically) {
  const std::string text = renderRuleset(labState(true), kNow);
  EXPECT_THAT(text, ::testing::StartsWith("add table inet bulkhead\n"
                                          "delete table inet bulkhead\n"
                                          "table inet bulkhead {\n"));
  EXPECT_THAT(text, ::testing::EndsWith("  }\n}\n"));
  EXPECT_EQ(text.find("} }"), std::string::npos) << "`} }` on one line is a syntax error";
  EXPECT_EQ(text.find("chain fwd"), std::string::npos) << "`fwd` is a keyword";
  EXPECT_EQ(text.find("owner"), std::string::npos) << "flags owner fails open";
  for (const char* chain : {"input", "output", "forward"}) {
    auto lines = chainLines(text, chain);
    ASSERT_FALSE(lines.empty()) << chain;
    EXPECT_EQ(lines[0], fmt::format("type filter hook {} priority -310; policy drop;", chain));
  }
  auto released = chainLines(renderRuleset(labState(false), kNow), "forward");
  EXPECT_EQ(released[0], "type filter hook forward priority -310; policy accept;");
}

TEST(RenderRuleset, IsolationKeepsDhcpNdAndResets) {
  const std::string text = renderRuleset(labState(true), kNow);
  auto in = chainLines(text, "input");
  auto out = chainLines(text, "output");
  auto has = [](const std::vector<std::string>& lines, const std::string& l) {
    return std::find(lines.begin(), lines.end(), l) != lines.end();
  };
  EXPECT_TRUE(has(in, "iif \"lo\" accept"));
  EXPECT_TRUE(has(out, "oif \"lo\" accept"));
  EXPECT_TRUE(has(in, "meta nfproto ipv4 udp sport 67 udp dport 68 accept"));
  EXPECT_TRUE(has(out, "meta nfproto ipv4 udp sport 68 udp dport 67 accept"));
  EXPECT_TRUE(has(in, "meta nfproto ipv6 udp sport 547 udp dport 546 accept"));
  EXPECT_TRUE(has(out, "meta nfproto ipv6 udp sport 546 udp dport 547 accept"));
  EXPECT_TRUE(has(out, "tcp flags & rst == rst accept"));
  for (const auto* lines : {&in, &out}) {
    auto nd = std::find_if(lines->begin(), lines->end(), [](const std::string& l) {
      return l.find("nd-neighbor-solicit") != std::string::npos;
    });
    ASSERT_NE(nd, lines->end());
    for (const char* type :
         {"nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit", "nd-router-advert"}) {
      EXPECT_NE(nd->find(type), std::string::npos) << type;
    }
  }
}

TEST(RenderRuleset, OverlappingExemptionsAreNormalised) {
  v1::DesiredState s = labState(true);
  auto* iso = s.mutable_isolation();
  *iso->add_exemptions() = rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.77.0.0/16", 5000, 6000);
  *iso->add_exemptions() = rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.77.0.50/32", 5432, 5432);
  *iso->add_exemptions() = rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.77.0.50/32", 5990, 6100);
  *iso->add_exemptions() = rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.77.0.50/32", 6101, 6200);
  *iso->add_exemptions() = rule(v1::DIRECTION_IN, v1::PROTOCOL_UDP, "10.77.0.50/32", 5432, 5432);
  *iso->add_exemptions() = rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.77.1.0/24", 22, 22);
  *iso->add_exemptions() = rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.77.1.0/24", 22, 22);
  *iso->add_exemptions() = rule(v1::DIRECTION_IN, v1::PROTOCOL_ICMP, "10.77.1.7/32");
  *iso->add_exemptions() = rule(v1::DIRECTION_IN, v1::PROTOCOL_ICMP, "10.77.0.0/16");
  const std::string text = renderRuleset(s, kNow);
  EXPECT_THAT(setElements(text, "exempt_in4"),
              ::testing::ElementsAre("10.77.0.0/16 . 6 . 5000-6000", "10.77.0.50 . 6 . 6001-6200",
                                     "10.77.0.50 . 17 . 5432", "10.77.1.0/24 . 6 . 22"));
  EXPECT_THAT(setElements(text, "exempt_icmp4"), ::testing::ElementsAre("10.77.0.0/16"));
}

// nft resolves protocol names through /etc/protocols; on a host without it (a minimal server
// without netbase, or an intruder who deleted it) a ruleset naming one is rejected whole and
// the host stays open. Found by the package test on a clean Debian root.
TEST(RenderRuleset, NamesNoProtocolSoItNeedsNoEtcProtocols) {
  v1::DesiredState s = exemptionsState();
  v1::Block tcp;
  tcp.set_remote_cidr("10.77.0.66/32");
  tcp.set_protocol(v1::PROTOCOL_TCP);
  tcp.mutable_ports()->set_first(22);
  tcp.mutable_ports()->set_last(22);
  *s.add_blocks() = tcp;
  v1::Block udp = tcp;
  udp.set_protocol(v1::PROTOCOL_UDP);
  udp.clear_ports();
  *s.add_blocks() = udp;
  const std::string text = renderRuleset(s, kNow);
  // (`tcp sport` is a header match, no lookup; set elements and l4proto values are.)
  for (const char* name :
       {"l4proto tcp", "l4proto udp", "l4proto icmp", "l4proto ipv6-icmp", " . tcp . ", " . udp . ",
        " . tcp,", " . udp,", " . tcp\n", " . udp\n"}) {
    EXPECT_EQ(text.find(name), std::string::npos) << name << " in\n" << text;
  }
  EXPECT_NE(text.find("meta l4proto 1 accept"), std::string::npos);
  EXPECT_NE(text.find("meta l4proto 58 accept"), std::string::npos);
  EXPECT_NE(text.find("10.77.0.66 . 6 . 22"), std::string::npos) << text;
  EXPECT_NE(text.find("10.77.0.66 . 17"), std::string::npos) << text;
}

TEST(RenderRuleset, InvalidEntriesAreLeftOutNeverWidened) {
  v1::DesiredState s = labState(true);
  *s.mutable_isolation()->add_exemptions() =
      rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "not-a-cidr", 22, 22);
  *s.mutable_isolation()->add_exemptions() =
      rule(v1::DIRECTION_UNSPECIFIED, v1::PROTOCOL_TCP, "10.0.0.1/32", 22, 22);
  *s.mutable_isolation()->add_exemptions() =
      rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.0.0.2/32", 30, 20);
  EXPECT_EQ(renderRuleset(s, kNow), renderRuleset(labState(true), kNow));
  EXPECT_FALSE(validateDesiredState(s).ok());
}

// ---- validation ----------------------------------------------------------------------------

TEST(ValidateDesiredState, NamesTheFieldAtFault) {
  EXPECT_TRUE(validateDesiredState(exemptionsState()).ok());

  v1::DesiredState s = labState(true);
  s.mutable_controller_endpoints(1)->set_ip("controller.example");
  EXPECT_EQ(validateDesiredState(s).message(),
            "controller_endpoints[1].ip: invalid value \"controller.example\": must be an IPv4 "
            "or IPv6 address literal");

  s = labState(true);
  s.mutable_controller_endpoints(0)->set_port(0);
  EXPECT_EQ(validateDesiredState(s).message(),
            "controller_endpoints[0].port: invalid value \"0\": must be 1 to 65535");

  s = labState(true);
  s.clear_controller_endpoints();
  EXPECT_EQ(validateDesiredState(s).message(),
            "controller_endpoints: invalid value \"\": empty: isolation would cut the "
            "controller channel");

  s = labState(true);
  *s.mutable_isolation()->add_exemptions() =
      rule(v1::DIRECTION_IN, v1::PROTOCOL_TCP, "10.0.0.1/32", 30, 20);
  EXPECT_EQ(validateDesiredState(s).message(),
            "isolation.exemptions[0].ports: invalid value \"30-20\": must be FIRST <= LAST <= "
            "65535 (0-0 = any)");

  s = labState(true);
  *s.mutable_isolation()->add_exemptions() =
      rule(v1::DIRECTION_UNSPECIFIED, v1::PROTOCOL_TCP, "10.0.0.1/32");
  EXPECT_EQ(validateDesiredState(s).message(),
            "isolation.exemptions[0].direction: invalid value \"DIRECTION_UNSPECIFIED\": must be "
            "IN, OUT or BOTH");

  s = labState(false);
  s.add_protected_cidrs("10.0.0.1/8");
  EXPECT_THAT(std::string(validateDesiredState(s).message()),
              ::testing::StartsWith("protected_cidrs[0]: invalid value \"10.0.0.1/8\""));
}

// ---- flow decision -------------------------------------------------------------------------

TEST(FlowKept, IsolatedKeepsOnlyWhatTheRulesetKeeps) {
  const v1::DesiredState s = exemptionsState();
  auto kept = [&](const Flow& f) { return flowKept(f, s, kNow); };
  // The controller channel, v4 and v6.
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "10.77.0.11", 40000, "10.77.0.1", 7443)));
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "fd77::11", 40000, "fd77::1", 7443)));
  // Same controller address, other port: cut.
  EXPECT_FALSE(kept(flow(FlowProto::kTcp, "10.77.0.11", 40000, "10.77.0.1", 22)));
  // Loopback, and a connection to our own address (goes over lo).
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "127.0.0.1", 5432, "127.0.0.1", 40000)));
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "::1", 5432, "::1", 40000)));
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "10.77.0.11", 5432, "10.77.0.11", 40000)));
  // IN exemptions match the LOCAL port; OUT exemptions the REMOTE port.
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "10.77.0.11", 22, "10.77.0.40", 50000)));
  EXPECT_FALSE(kept(flow(FlowProto::kTcp, "10.77.0.11", 50000, "10.77.0.40", 22)));
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "fd77::11", 22, "fd77::40", 50000)));
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "10.77.0.11", 5432, "10.77.0.50", 50000)));
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "10.77.0.11", 50000, "10.77.0.50", 5432)));
  EXPECT_TRUE(kept(flow(FlowProto::kUdp, "10.77.0.11", 50000, "10.77.0.9", 6015)));
  EXPECT_FALSE(kept(flow(FlowProto::kUdp, "10.77.0.11", 50000, "10.77.0.9", 6025)));
  EXPECT_TRUE(kept(flow(FlowProto::kUdp, "10.77.0.11", 50000, "10.77.0.50", 6025)));
  EXPECT_FALSE(kept(flow(FlowProto::kTcp, "10.77.0.11", 50000, "10.77.0.9", 6015)));
  // proto any, both directions, any port.
  EXPECT_TRUE(kept(flow(FlowProto::kUdp, "fd77::11", 1234, "fd77::50", 9)));
  EXPECT_TRUE(kept(flow(FlowProto::kIcmpv6, "fd77::11", 0, "fd77::50", 0)));
  EXPECT_FALSE(kept(flow(FlowProto::kOther, "fd77::11", 0, "fd77::50", 0)));
  // ICMP exemptions.
  EXPECT_TRUE(kept(flow(FlowProto::kIcmp, "10.77.0.11", 0, "10.77.0.40", 0)));
  EXPECT_TRUE(kept(flow(FlowProto::kIcmpv6, "fd77::11", 0, "fd77:1::9", 0)));
  EXPECT_FALSE(kept(flow(FlowProto::kIcmp, "10.77.0.11", 0, "10.77.0.66", 0)));
  // The attacker, v4 and v6, in and out.
  EXPECT_FALSE(kept(flow(FlowProto::kTcp, "10.77.0.11", 22, "10.77.0.66", 51234)));
  EXPECT_FALSE(kept(flow(FlowProto::kTcp, "fd77::11", 22, "fd77::66", 51234)));
  EXPECT_FALSE(kept(flow(FlowProto::kTcp, "10.77.0.11", 51234, "10.77.0.66", 443)));
  // Family matters: a v4 rule keeps nothing for v6.
  EXPECT_FALSE(kept(flow(FlowProto::kTcp, "fd77::11", 22, "fd77::41", 50000)));
  // DHCP clients.
  EXPECT_TRUE(kept(flow(FlowProto::kUdp, "10.77.0.11", 68, "10.77.0.254", 67)));
  EXPECT_TRUE(kept(flow(FlowProto::kUdp, "fe80::11", 546, "fe80::1", 547)));
  // Protected CIDRs.
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "10.77.0.11", 40000, "10.77.200.9", 80)));
  // IPv4-mapped IPv6 sockets count as IPv4.
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "::ffff:10.77.0.11", 22, "::ffff:10.77.0.40", 50000)));
  EXPECT_FALSE(kept(flow(FlowProto::kTcp, "::ffff:10.77.0.11", 22, "::ffff:10.77.0.66", 5000)));
  EXPECT_TRUE(kept(flow(FlowProto::kTcp, "::ffff:10.77.0.11", 4000, "::ffff:10.77.0.1", 7443)));
  // Forwarded flows are cut, unless they touch a protected CIDR.
  Flow fwd = flow(FlowProto::kTcp, "172.17.0.2", 40000, "10.77.0.50", 5432);
  fwd.forwarded = true;
  EXPECT_FALSE(kept(fwd));
  fwd = flow(FlowProto::kTcp, "172.17.0.2", 40000, "10.77.200.1", 5432);
  fwd.forwarded = true;
  EXPECT_TRUE(kept(fwd));
}

TEST(FlowKept, NotIsolatedOrExpiredKeepsEverything) {
  const Flow attacker = flow(FlowProto::kTcp, "10.77.0.11", 22, "10.77.0.66", 51234);
  EXPECT_TRUE(flowKept(attacker, labState(false), kNow));
  v1::DesiredState s = labState(true);
  EXPECT_FALSE(flowKept(attacker, s, kNow));
  s.mutable_isolation()->set_expires_at_unix_ms(kNow - 1);
  EXPECT_TRUE(flowKept(attacker, s, kNow));
  EXPECT_FALSE(flowKept(attacker, s)) << "the two-argument form ignores expiry";
  EXPECT_FALSE(FlowFilter(s, true).kept(attacker));
  EXPECT_TRUE(FlowFilter(s, false).kept(attacker));
}

// ---- properties over random states ---------------------------------------------------------

class Random {
 public:
  explicit Random(uint32_t seed) : gen_(seed) {}
  int upTo(int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen_); }
  bool coin() { return upTo(2) == 1; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[upTo(static_cast<int>(v.size()))];
  }
  std::mt19937& gen() { return gen_; }

 private:
  std::mt19937 gen_;
};

// Small address spaces so that rules overlap often.
std::string randomCidr(Random& r, bool v6) {
  if (v6) {
    int prefix = r.pick(std::vector<int>{0, 16, 64, 120, 124, 128});
    uint8_t last = static_cast<uint8_t>(r.upTo(64));
    Cidr c = *parseCidr("x", "fd77::/16");
    if (prefix > 16) c.addr[15] = last;
    for (int bit = prefix; bit < 128; ++bit) c.addr[bit / 8] &= ~(0x80 >> (bit % 8));
    c.prefix_len = prefix;
    return c.toString();
  }
  int prefix = r.pick(std::vector<int>{0, 16, 24, 26, 28, 30, 32});
  Cidr c = *parseCidr("x", "10.77.0.0/16");
  if (prefix > 16) c.addr[3] = static_cast<uint8_t>(r.upTo(64));
  for (int bit = prefix; bit < 32; ++bit) c.addr[bit / 8] &= ~(0x80 >> (bit % 8));
  c.prefix_len = prefix;
  return c.toString();
}

std::pair<uint32_t, uint32_t> randomPorts(Random& r) {
  switch (r.upTo(5)) {
    case 0:
      return {0, 0};
    case 1:
      return {22, 22};
    case 2:
      return {5432, 5432};
    case 3:
      return {6000, 6010};
    default: {
      uint32_t lo = 5000 + static_cast<uint32_t>(r.upTo(1100));
      return {lo, lo + static_cast<uint32_t>(r.upTo(200))};
    }
  }
}

v1::DesiredState randomState(Random& r) {
  v1::DesiredState s;
  s.set_generation(static_cast<uint64_t>(r.upTo(1000)));
  int n4 = 1 + r.upTo(3), n6 = 1 + r.upTo(3);
  for (int i = 0; i < n4 + n6; ++i) {
    auto* e = s.add_controller_endpoints();
    bool v6 = i >= n4;
    // Controller addresses may fall inside exempt or blocked ranges on purpose.
    e->set_ip(v6 ? fmt::format("fd77::{:x}", r.upTo(64)) : fmt::format("10.77.0.{}", r.upTo(64)));
    e->set_port(r.coin() ? 7443 : static_cast<uint32_t>(1 + r.upTo(65535)));
  }
  auto* iso = s.mutable_isolation();
  iso->set_enabled(r.upTo(4) != 0);
  switch (r.upTo(3)) {
    case 0:
      break;
    case 1:
      iso->set_expires_at_unix_ms(kNow - r.upTo(1000));
      break;
    default:
      iso->set_expires_at_unix_ms(kNow + 1 + r.upTo(1000));
      break;
  }
  int rules = r.upTo(25);
  for (int i = 0; i < rules; ++i) {
    auto [lo, hi] = randomPorts(r);
    auto proto = r.pick(std::vector<v1::Protocol>{v1::PROTOCOL_TCP, v1::PROTOCOL_UDP,
                                                  v1::PROTOCOL_ICMP, v1::PROTOCOL_ANY});
    if (proto == v1::PROTOCOL_ICMP) lo = hi = 0;
    *iso->add_exemptions() = rule(
        r.pick(std::vector<v1::Direction>{v1::DIRECTION_IN, v1::DIRECTION_OUT, v1::DIRECTION_BOTH}),
        proto, randomCidr(r, r.coin()), lo, hi);
  }
  if (r.upTo(4) == 0) s.add_protected_cidrs(randomCidr(r, r.coin()));
  return s;
}

// The decision written the obvious way, straight from the (unnormalised) rules.
bool referenceKept(const Flow& f, const v1::DesiredState& s, int64_t now) {
  if (!isolationActive(s, now)) return true;
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(f.family, f.remote_addr.data(), buf, sizeof buf);
  Cidr remote = *parseCidr("remote", buf);
  inet_ntop(f.family, f.local_addr.data(), buf, sizeof buf);
  Cidr local = *parseCidr("local", buf);
  for (const auto& p : s.protected_cidrs()) {
    if (parseCidr("p", p)->contains(remote)) return true;
  }
  if (f.forwarded) return false;
  if (local == remote) return true;
  for (const auto& e : s.controller_endpoints()) {
    if (f.proto == FlowProto::kTcp && *parseCidr("c", e.ip()) == remote &&
        e.port() == f.remote_port) {
      return true;
    }
  }
  for (const auto& rl : s.isolation().exemptions()) {
    Cidr c = *parseCidr("r", rl.remote_cidr());
    if (!c.contains(remote)) continue;
    bool icmp = f.proto == FlowProto::kIcmp || f.proto == FlowProto::kIcmpv6;
    if (icmp) {
      if (rl.protocol() == v1::PROTOCOL_ICMP || rl.protocol() == v1::PROTOCOL_ANY) return true;
      continue;
    }
    bool proto_ok = rl.protocol() == v1::PROTOCOL_ANY ||
                    (rl.protocol() == v1::PROTOCOL_TCP && f.proto == FlowProto::kTcp) ||
                    (rl.protocol() == v1::PROTOCOL_UDP && f.proto == FlowProto::kUdp);
    if (!proto_ok) continue;
    uint32_t lo = rl.ports().first(), hi = rl.ports().last();
    if (lo == 0 && hi == 0) hi = 65535;
    auto in = [&](uint16_t p) { return p >= lo && p <= hi; };
    bool dir_in = rl.direction() != v1::DIRECTION_OUT;
    bool dir_out = rl.direction() != v1::DIRECTION_IN;
    if ((dir_in && in(f.local_port)) || (dir_out && in(f.remote_port))) return true;
  }
  return false;
}

Flow randomFlow(Random& r) {
  bool v6 = r.coin();
  auto proto = r.pick(std::vector<FlowProto>{FlowProto::kTcp, FlowProto::kTcp, FlowProto::kUdp,
                                             v6 ? FlowProto::kIcmpv6 : FlowProto::kIcmp});
  std::string local = v6 ? "fd77:0:0:1::11" : "10.78.0.11";
  std::string remote = v6 ? fmt::format("fd77::{:x}", r.upTo(80))
                          : fmt::format("10.77.{}.{}", r.upTo(3) == 0 ? 1 : 0, r.upTo(80));
  auto port = [&]() -> uint16_t {
    switch (r.upTo(4)) {
      case 0:
        return 22;
      case 1:
        return 5432;
      case 2:
        return static_cast<uint16_t>(5990 + r.upTo(40));
      default:
        return static_cast<uint16_t>(4900 + r.upTo(1400));
    }
  };
  Flow f = flow(proto, local, port(), remote, port());
  if (proto == FlowProto::kIcmp || proto == FlowProto::kIcmpv6) f.local_port = f.remote_port = 0;
  return f;
}

struct ParsedElement {
  Cidr cidr;
  std::string proto;
  uint32_t lo = 0, hi = 0;
};

ParsedElement parseElement(const std::string& e) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t sep = e.find(" . ", start);
    parts.push_back(e.substr(start, sep == std::string::npos ? std::string::npos : sep - start));
    if (sep == std::string::npos) break;
    start = sep + 3;
  }
  ParsedElement p;
  auto c = parseCidr("element", parts[0]);
  EXPECT_TRUE(c.ok()) << e;
  if (c.ok()) p.cidr = *c;
  if (parts.size() == 3) {
    p.proto = parts[1];
    size_t dash = parts[2].find('-');
    p.lo = static_cast<uint32_t>(std::stoul(parts[2].substr(0, dash)));
    p.hi = dash == std::string::npos ? p.lo
                                     : static_cast<uint32_t>(std::stoul(parts[2].substr(dash + 1)));
  }
  return p;
}

bool overlap(const ParsedElement& a, const ParsedElement& b) {
  if (a.proto != b.proto) return false;
  if (!a.cidr.contains(b.cidr) && !b.cidr.contains(a.cidr)) return false;
  return a.lo <= b.hi && b.lo <= a.hi;
}

TEST(RulesetProperties, RandomStates) {
  Random r(20240601);
  for (int iter = 0; iter < 400; ++iter) {
    SCOPED_TRACE(fmt::format("iteration {}", iter));
    const v1::DesiredState s = randomState(r);
    const std::string text = renderRuleset(s, kNow);

    // Deterministic, and independent of the order of rules and endpoints.
    EXPECT_EQ(text, renderRuleset(s, kNow));
    v1::DesiredState shuffled = s;
    std::shuffle(shuffled.mutable_isolation()->mutable_exemptions()->begin(),
                 shuffled.mutable_isolation()->mutable_exemptions()->end(), r.gen());
    std::shuffle(shuffled.mutable_controller_endpoints()->begin(),
                 shuffled.mutable_controller_endpoints()->end(), r.gen());
    EXPECT_EQ(text, renderRuleset(shuffled, kNow));

    // The controller channel is in the sets and accepted before any drop, in and out.
    auto ctrl4 = setElements(text, "ctrl4");
    auto ctrl6 = setElements(text, "ctrl6");
    for (const auto& e : s.controller_endpoints()) {
      const auto& set = e.ip().find(':') == std::string::npos ? ctrl4 : ctrl6;
      std::array<uint8_t, 16> a{};
      char canon[INET6_ADDRSTRLEN] = {};
      int fam = e.ip().find(':') == std::string::npos ? AF_INET : AF_INET6;
      inet_pton(fam, e.ip().c_str(), a.data());
      inet_ntop(fam, a.data(), canon, sizeof canon);
      std::string elem = fmt::format("{} . {}", canon, e.port());
      EXPECT_NE(std::find(set.begin(), set.end(), elem), set.end()) << elem << "\n" << text;
    }
    for (const auto& [chain, rule4, rule6] :
         {std::tuple<std::string, std::string, std::string>{
              "input", "ip saddr . tcp sport @ctrl4 accept", "ip6 saddr . tcp sport @ctrl6 accept"},
          {"output", "ip daddr . tcp dport @ctrl4 accept",
           "ip6 daddr . tcp dport @ctrl6 accept"}}) {
      auto lines = chainLines(text, chain);
      auto first_drop = std::find_if(lines.begin() + 1, lines.end(), [](const std::string& l) {
        return l.find("drop") != std::string::npos || l.find("reject") != std::string::npos;
      });
      for (const auto& want : {rule4, rule6}) {
        auto at = std::find(lines.begin(), lines.end(), want);
        EXPECT_TRUE(at != lines.end() && at < first_drop) << chain << ": " << want;
      }
    }

    // Every controller-endpoint flow is kept, from any local address and port.
    for (const auto& e : s.controller_endpoints()) {
      bool v6 = e.ip().find(':') != std::string::npos;
      Flow f = flow(FlowProto::kTcp, v6 ? "fd77::99" : "10.77.0.99",
                    static_cast<uint16_t>(1024 + r.upTo(60000)), e.ip(),
                    static_cast<uint16_t>(e.port()));
      EXPECT_TRUE(flowKept(f, s, kNow)) << f.toString();
    }

    // No two elements of an interval set overlap.
    for (const char* set : {"exempt_in4", "exempt_in6", "exempt_out4", "exempt_out6",
                            "exempt_icmp4", "exempt_icmp6", "protected4", "protected6"}) {
      std::vector<ParsedElement> elems;
      for (const auto& e : setElements(text, set)) elems.push_back(parseElement(e));
      for (size_t i = 0; i < elems.size(); ++i) {
        for (size_t j = i + 1; j < elems.size(); ++j) {
          EXPECT_FALSE(overlap(elems[i], elems[j])) << set << " element " << i << " and " << j;
        }
      }
    }

    // Normalisation neither widens nor narrows: the decision equals the naive one.
    const FlowFilter filter(s, isolationActive(s, kNow));
    for (int k = 0; k < 50; ++k) {
      Flow f = randomFlow(r);
      EXPECT_EQ(filter.kept(f), referenceKept(f, s, kNow)) << f.toString();
    }
  }
}

}  // namespace
}  // namespace bulkhead::agent
