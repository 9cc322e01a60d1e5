#include "agent/core/ruleset.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "agent/core/blocks.h"
#include "common/format.h"
#include "common/parse.h"

namespace bulkhead::agent {
namespace {

namespace v1 = bulkhead::v1;

constexpr uint32_t kMaxPort = 65535;
constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

using PortRanges = std::vector<std::pair<uint32_t, uint32_t>>;  // inclusive, sorted, disjoint

bool isHostPrefix(const Cidr& c) { return c.prefix_len == (c.family == AF_INET ? 32 : 128); }

// IPv4-mapped IPv6 (::ffff:a.b.c.d/96+n) -> IPv4 (a.b.c.d/n); others unchanged.
Cidr unmapped(Cidr c) {
  static constexpr std::array<uint8_t, 12> kPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (c.family != AF_INET6 || c.prefix_len < 96 ||
      !std::equal(kPrefix.begin(), kPrefix.end(), c.addr.begin())) {
    return c;
  }
  Cidr v4;
  v4.family = AF_INET;
  std::copy(c.addr.begin() + 12, c.addr.end(), v4.addr.begin());
  v4.prefix_len = c.prefix_len - 96;
  return v4;
}

std::optional<Cidr> cidrOf(const std::string& text) {
  auto c = parseCidr("cidr", text);
  if (!c.ok()) return std::nullopt;
  return unmapped(*c);
}

bool cidrLess(const Cidr& a, const Cidr& b) {
  return std::tie(a.family, a.addr, a.prefix_len) < std::tie(b.family, b.addr, b.prefix_len);
}

// Port range of an exemption: 0-0 = any; nullopt when invalid.
std::optional<std::pair<uint32_t, uint32_t>> portsOf(const v1::PortRange& p) {
  if (p.first() == 0 && p.last() == 0) return std::make_pair(0u, kMaxPort);
  if (p.first() > p.last() || p.last() > kMaxPort) return std::nullopt;
  return std::make_pair(p.first(), p.last());
}

PortRanges mergeRanges(PortRanges r) {
  std::sort(r.begin(), r.end());
  PortRanges out;
  for (const auto& [lo, hi] : r) {
    if (!out.empty() && lo <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, hi);
    } else {
      out.emplace_back(lo, hi);
    }
  }
  return out;
}

// a minus b; both merged.
PortRanges subtractRanges(const PortRanges& a, const PortRanges& b) {
  PortRanges out;
  for (auto [lo, hi] : a) {
    uint32_t cur = lo;
    bool done = false;
    for (const auto& [blo, bhi] : b) {
      if (bhi < cur || blo > hi) continue;
      if (blo > cur) out.emplace_back(cur, blo - 1);
      if (bhi >= hi) {
        done = true;
        break;
      }
      cur = bhi + 1;
    }
    if (!done) out.emplace_back(cur, hi);
  }
  return out;
}

// Address-only interval set: outermost CIDRs only (nested ones are covered), sorted.
std::vector<Cidr> normaliseCidrs(std::vector<Cidr> cidrs) {
  std::sort(cidrs.begin(), cidrs.end(), [](const Cidr& a, const Cidr& b) {
    return std::tie(a.prefix_len, a.addr) < std::tie(b.prefix_len, b.addr);
  });
  std::vector<Cidr> kept;
  for (const Cidr& c : cidrs) {
    bool covered =
        std::any_of(kept.begin(), kept.end(), [&](const Cidr& k) { return k.contains(c); });
    if (!covered) kept.push_back(c);
  }
  std::sort(kept.begin(), kept.end(), cidrLess);
  return kept;
}

struct Element {  // remote . l4proto . port range
  Cidr cidr;
  uint8_t proto = 0;
  uint32_t lo = 0, hi = 0;
};

// One (remote . proto . port) interval set of one family. Normalisation: for each proto,
// a CIDR keeps only the ports that no strictly enclosing CIDR already covers (CIDRs are
// either nested or disjoint), and its own ranges are merged: no two elements overlap, and
// the union of the elements is exactly the union of the input.
class PortSet {
 public:
  void add(const Cidr& cidr, uint8_t proto, uint32_t lo, uint32_t hi) {
    Key key{proto, cidr.prefix_len, cidr.addr};
    auto& entry = entries_[key];
    entry.cidr = cidr;
    entry.proto = proto;
    entry.ranges.emplace_back(lo, hi);
  }

  std::vector<Element> elements() const {
    std::vector<Element> out;
    // entries_ is ordered by proto, then prefix length: enclosing CIDRs come first.
    std::vector<std::pair<const Entry*, PortRanges>> done;  // entry, its merged ranges
    for (const auto& [key, entry] : entries_) {
      PortRanges covered;
      for (const auto& [prev, prev_ranges] : done) {
        if (prev->proto == entry.proto && prev->cidr.prefix_len < entry.cidr.prefix_len &&
            prev->cidr.contains(entry.cidr)) {
          covered.insert(covered.end(), prev_ranges.begin(), prev_ranges.end());
        }
      }
      PortRanges merged = mergeRanges(entry.ranges);
      for (const auto& [lo, hi] : subtractRanges(merged, mergeRanges(covered))) {
        out.push_back(Element{entry.cidr, entry.proto, lo, hi});
      }
      done.emplace_back(&entry, std::move(merged));
    }
    std::sort(out.begin(), out.end(), [](const Element& a, const Element& b) {
      return std::tie(a.cidr.addr, a.cidr.prefix_len, a.proto, a.lo) <
             std::tie(b.cidr.addr, b.cidr.prefix_len, b.proto, b.lo);
    });
    return out;
  }

 private:
  struct Key {
    uint8_t proto;
    int prefix_len;
    std::array<uint8_t, 16> addr;
    bool operator<(const Key& o) const {
      return std::tie(proto, prefix_len, addr) < std::tie(o.proto, o.prefix_len, o.addr);
    }
  };
  struct Entry {
    Cidr cidr;
    uint8_t proto = 0;
    PortRanges ranges;
  };
  std::map<Key, Entry> entries_;
};

// Everything the rendering and the flow decision need, parsed and split by family
// (index 0: IPv4, 1: IPv6).
struct Model {
  bool isolated = false;
  std::array<std::set<std::pair<std::array<uint8_t, 16>, uint16_t>>, 2> ctrl;
  std::array<std::vector<Cidr>, 2> protected_cidrs;
  std::array<std::vector<Element>, 2> exempt_in, exempt_out;  // normalised
  std::array<std::vector<Cidr>, 2> exempt_icmp;
};

int familyIndex(const Cidr& c) { return c.family == AF_INET ? 0 : 1; }

Model buildModel(const v1::DesiredState& state, bool isolated) {
  Model m;
  m.isolated = isolated;
  for (const auto& ep : state.controller_endpoints()) {
    auto c = cidrOf(ep.ip());
    if (!c || !isHostPrefix(*c) || ep.port() == 0 || ep.port() > kMaxPort) continue;
    m.ctrl[familyIndex(*c)].emplace(c->addr, static_cast<uint16_t>(ep.port()));
  }
  for (const auto& text : state.protected_cidrs()) {
    if (auto c = cidrOf(text)) m.protected_cidrs[familyIndex(*c)].push_back(*c);
  }
  for (auto& v : m.protected_cidrs) v = normaliseCidrs(v);
  if (!isolated) return m;
  std::array<PortSet, 2> in_sets, out_sets;
  for (const auto& rule : state.isolation().exemptions()) {
    auto c = cidrOf(rule.remote_cidr());
    auto ports = portsOf(rule.ports());
    if (!c || !ports) continue;
    bool in = rule.direction() == v1::DIRECTION_IN || rule.direction() == v1::DIRECTION_BOTH;
    bool out = rule.direction() == v1::DIRECTION_OUT || rule.direction() == v1::DIRECTION_BOTH;
    if (!in && !out) continue;
    int f = familyIndex(*c);
    std::vector<uint8_t> protos;
    switch (rule.protocol()) {
      case v1::PROTOCOL_TCP:
        protos = {kTcp};
        break;
      case v1::PROTOCOL_UDP:
        protos = {kUdp};
        break;
      case v1::PROTOCOL_UNSPECIFIED:
      case v1::PROTOCOL_ANY:
        protos = {kTcp, kUdp};
        [[fallthrough]];
      case v1::PROTOCOL_ICMP:
        m.exempt_icmp[f].push_back(*c);
        break;
      default:
        continue;
    }
    for (uint8_t p : protos) {
      if (in) in_sets[f].add(*c, p, ports->first, ports->second);
      if (out) out_sets[f].add(*c, p, ports->first, ports->second);
    }
  }
  for (int f = 0; f < 2; ++f) {
    m.exempt_in[f] = in_sets[f].elements();
    m.exempt_out[f] = out_sets[f].elements();
  }
  for (auto& v : m.exempt_icmp) v = normaliseCidrs(v);
  return m;
}

std::string addrText(int family, const std::array<uint8_t, 16>& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, addr.data(), buf, sizeof buf);
  return buf;
}

std::string cidrText(const Cidr& c) {
  return isHostPrefix(c) ? addrText(c.family, c.addr) : c.toString();
}

// Protocols are written as numbers, never names: nft resolves a name through /etc/protocols
// (netbase), which a minimal server may lack and an intruder may delete, and then rejects the
// whole ruleset ("Could not resolve protocol name"). Numbers need no file.
std::string protoText(uint8_t p) { return std::to_string(p); }

std::string portText(uint32_t lo, uint32_t hi) {
  return lo == hi ? fmt::format("{}", lo) : fmt::format("{}-{}", lo, hi);
}

void renderSet(std::string& out, std::string_view name, std::string_view type,
               std::string_view flags, const std::vector<std::string>& elements) {
  out += fmt::format("  set {} {{\n    type {}\n    flags {}\n", name, type, flags);
  if (!elements.empty()) {
    out += "    elements = {\n";
    for (size_t i = 0; i < elements.size(); ++i) {
      out += fmt::format("      {}{}\n", elements[i], i + 1 < elements.size() ? "," : "");
    }
    out += "    }\n";
  }
  out += "  }\n";
}

std::vector<std::string> cidrElements(const std::vector<Cidr>& cidrs) {
  std::vector<std::string> out;
  for (const Cidr& c : cidrs) out.push_back(cidrText(c));
  return out;
}

std::vector<std::string> portElements(const std::vector<Element>& elements) {
  std::vector<std::string> out;
  for (const Element& e : elements) {
    out.push_back(
        fmt::format("{} . {} . {}", cidrText(e.cidr), protoText(e.proto), portText(e.lo, e.hi)));
  }
  return out;
}

void renderChainHead(std::string& out, std::string_view name, std::string_view hook,
                     bool isolated) {
  out += fmt::format("  chain {} {{\n    type filter hook {} priority -310; policy {};\n", name,
                     hook, isolated ? "drop" : "accept");
}

// True when the flow's address is a loopback address.
bool isLoopback(const Cidr& a) {
  if (a.family == AF_INET) return a.addr[0] == 127;
  static constexpr std::array<uint8_t, 16> kLo = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return a.addr == kLo;
}

bool inAny(const std::vector<Cidr>& cidrs, const Cidr& a) {
  return std::any_of(cidrs.begin(), cidrs.end(), [&](const Cidr& c) { return c.contains(a); });
}

Cidr hostCidr(int family, const std::array<uint8_t, 16>& addr) {
  Cidr c;
  c.family = family == AF_INET6 ? AF_INET6 : AF_INET;
  c.addr = addr;
  if (c.family == AF_INET) std::fill(c.addr.begin() + 4, c.addr.end(), 0);
  c.prefix_len = c.family == AF_INET ? 32 : 128;
  return unmapped(c);
}

bool flowKeptBy(const Model& m, const Flow& flow) {
  if (!m.isolated) return true;
  const Cidr local = hostCidr(flow.family, flow.local_addr);
  const Cidr remote = hostCidr(flow.family, flow.remote_addr);
  const int f = familyIndex(remote);
  const auto& prot = m.protected_cidrs[f];
  if (flow.forwarded) return inAny(prot, local) || inAny(prot, remote);
  if (isLoopback(local) || isLoopback(remote) || local == remote) return true;
  if (flow.proto == FlowProto::kTcp && m.ctrl[f].count({remote.addr, flow.remote_port}) > 0) {
    return true;
  }
  if (inAny(prot, remote)) return true;
  if (flow.proto == FlowProto::kIcmp || flow.proto == FlowProto::kIcmpv6) {
    return inAny(m.exempt_icmp[f], remote);
  }
  if (flow.proto != FlowProto::kTcp && flow.proto != FlowProto::kUdp) return false;
  const uint8_t p = flow.proto == FlowProto::kTcp ? kTcp : kUdp;
  auto matches = [&](const std::vector<Element>& elements, uint16_t port) {
    return std::any_of(elements.begin(), elements.end(), [&](const Element& e) {
      return e.proto == p && port >= e.lo && port <= e.hi && e.cidr.contains(remote);
    });
  };
  if (matches(m.exempt_in[f], flow.local_port) || matches(m.exempt_out[f], flow.remote_port)) {
    return true;
  }
  if (flow.proto == FlowProto::kUdp) {  // DHCP / DHCPv6 client
    if (f == 0 && flow.local_port == 68 && flow.remote_port == 67) return true;
    if (f == 1 && flow.local_port == 546 && flow.remote_port == 547) return true;
  }
  return false;
}

}  // namespace

absl::Status validateDesiredState(const v1::DesiredState& state) {
  auto bad = [](std::string field, std::string value, std::string why) {
    return absl::InvalidArgumentError(
        fmt::format("{}: invalid value \"{}\": {}", field, value, why));
  };
  for (int i = 0; i < state.controller_endpoints_size(); ++i) {
    const auto& ep = state.controller_endpoints(i);
    std::string field = fmt::format("controller_endpoints[{}]", i);
    auto c = parseCidr(field + ".ip", ep.ip());
    if (!c.ok() || ep.ip().find('/') != std::string::npos) {
      return bad(field + ".ip", ep.ip(), "must be an IPv4 or IPv6 address literal");
    }
    if (ep.port() == 0 || ep.port() > kMaxPort) {
      return bad(field + ".port", fmt::format("{}", ep.port()), "must be 1 to 65535");
    }
  }
  for (int i = 0; i < state.protected_cidrs_size(); ++i) {
    auto c = parseCidr(fmt::format("protected_cidrs[{}]", i), state.protected_cidrs(i));
    if (!c.ok()) return c.status();
  }
  const auto& iso = state.isolation();
  for (int i = 0; i < iso.exemptions_size(); ++i) {
    const auto& r = iso.exemptions(i);
    std::string field = fmt::format("isolation.exemptions[{}]", i);
    auto c = parseCidr(field + ".remote_cidr", r.remote_cidr());
    if (!c.ok()) return c.status();
    if (r.direction() != v1::DIRECTION_IN && r.direction() != v1::DIRECTION_OUT &&
        r.direction() != v1::DIRECTION_BOTH) {
      return bad(field + ".direction", v1::Direction_Name(r.direction()),
                 "must be IN, OUT or BOTH");
    }
    if (!v1::Protocol_IsValid(r.protocol())) {
      return bad(field + ".protocol", fmt::format("{}", static_cast<int>(r.protocol())),
                 "unknown protocol");
    }
    if (!portsOf(r.ports())) {
      return bad(field + ".ports", fmt::format("{}-{}", r.ports().first(), r.ports().last()),
                 "must be FIRST <= LAST <= 65535 (0-0 = any)");
    }
  }
  if (auto s = validateBlocks(state); !s.ok()) return s;
  if (iso.enabled() && state.controller_endpoints_size() == 0) {
    return bad("controller_endpoints", "", "empty: isolation would cut the controller channel");
  }
  return absl::OkStatus();
}

bool isolationActive(const v1::DesiredState& state, int64_t now_unix_ms) {
  const auto& iso = state.isolation();
  if (!iso.enabled()) return false;
  return iso.expires_at_unix_ms() == 0 || iso.expires_at_unix_ms() > now_unix_ms;
}

std::string renderRuleset(const v1::DesiredState& state, int64_t now_unix_ms) {
  const bool iso = isolationActive(state, now_unix_ms);
  const Model m = buildModel(state, iso);
  const BlockElements blocks = blockElements(state, now_unix_ms);
  std::string out = "add table inet bulkhead\ndelete table inet bulkhead\n";
  out += "table inet bulkhead {\n";

  static constexpr std::array<const char*, 2> kSuffix = {"4", "6"};
  static constexpr std::array<const char*, 2> kAddrType = {"ipv4_addr", "ipv6_addr"};
  static constexpr std::array<int, 2> kFamily = {AF_INET, AF_INET6};
  for (int f = 0; f < 2; ++f) {
    std::vector<std::string> ctrl;
    for (const auto& [addr, port] : m.ctrl[f]) {
      ctrl.push_back(fmt::format("{} . {}", addrText(kFamily[f], addr), port));
    }
    renderSet(out, fmt::format("ctrl{}", kSuffix[f]),
              fmt::format("{} . inet_service", kAddrType[f]), "interval", ctrl);
  }
  for (int f = 0; f < 2; ++f) {
    renderSet(out, fmt::format("protected{}", kSuffix[f]), kAddrType[f], "interval",
              cidrElements(m.protected_cidrs[f]));
  }
  for (int f = 0; f < 2; ++f) {
    renderSet(out, fmt::format("block{}", kSuffix[f]), kAddrType[f], "interval,timeout", {});
  }
  for (int f = 0; f < 2; ++f) {
    std::string type = fmt::format("{} . inet_proto . inet_service", kAddrType[f]);
    renderSet(out, fmt::format("exempt_in{}", kSuffix[f]), type, "interval",
              portElements(m.exempt_in[f]));
    renderSet(out, fmt::format("exempt_out{}", kSuffix[f]), type, "interval",
              portElements(m.exempt_out[f]));
    renderSet(out, fmt::format("exempt_icmp{}", kSuffix[f]), kAddrType[f], "interval",
              cidrElements(m.exempt_icmp[f]));
  }
  out += renderBlockSets(blocks, now_unix_ms);

  // input: packets from the remote (saddr), to our port (dport).
  renderChainHead(out, "input", "input", iso);
  out += "    iif \"lo\" accept\n";
  out += "    ip saddr . tcp sport @ctrl4 accept\n";
  out += "    ip6 saddr . tcp sport @ctrl6 accept\n";
  out += "    ip saddr @protected4 accept\n";
  out += "    ip6 saddr @protected6 accept\n";
  out += "    ip saddr @block4 drop\n";
  out += "    ip6 saddr @block6 drop\n";
  out += renderBlockRules(blocks, "input");
  if (iso) {
    out += "    ip saddr . meta l4proto . th dport @exempt_in4 accept\n";
    out += "    ip6 saddr . meta l4proto . th dport @exempt_in6 accept\n";
    out += "    ip saddr . meta l4proto . th sport @exempt_out4 accept\n";
    out += "    ip6 saddr . meta l4proto . th sport @exempt_out6 accept\n";
    out += "    ip saddr @exempt_icmp4 meta l4proto 1 accept\n";    // 1: icmp (protoText)
    out += "    ip6 saddr @exempt_icmp6 meta l4proto 58 accept\n";  // 58: ipv6-icmp
    out += "    meta nfproto ipv4 udp sport 67 udp dport 68 accept\n";
    out += "    meta nfproto ipv6 udp sport 547 udp dport 546 accept\n";
    out +=
        "    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, "
        "nd-neighbor-advert, mld-listener-query } accept\n";
    out += "    icmpv6 type packet-too-big accept\n";
    out += "    icmp type destination-unreachable icmp code frag-needed accept\n";
  }
  out += "  }\n";

  // output: packets to the remote (daddr), from our port (sport).
  renderChainHead(out, "output", "output", iso);
  out += "    oif \"lo\" accept\n";
  out += "    ip daddr . tcp dport @ctrl4 accept\n";
  out += "    ip6 daddr . tcp dport @ctrl6 accept\n";
  out += "    ip daddr @protected4 accept\n";
  out += "    ip6 daddr @protected6 accept\n";
  // Resets of cut connections (SOCK_DESTROY) must reach the peer, blocked or not.
  out += "    tcp flags & rst == rst accept\n";
  out += "    ip daddr @block4 drop\n";
  out += "    ip6 daddr @block6 drop\n";
  out += renderBlockRules(blocks, "output");
  if (iso) {
    out += "    ip daddr . meta l4proto . th sport @exempt_in4 accept\n";
    out += "    ip6 daddr . meta l4proto . th sport @exempt_in6 accept\n";
    out += "    ip daddr . meta l4proto . th dport @exempt_out4 accept\n";
    out += "    ip6 daddr . meta l4proto . th dport @exempt_out6 accept\n";
    out += "    ip daddr @exempt_icmp4 meta l4proto 1 accept\n";    // 1: icmp (protoText)
    out += "    ip6 daddr @exempt_icmp6 meta l4proto 58 accept\n";  // 58: ipv6-icmp
    out += "    meta nfproto ipv4 udp sport 68 udp dport 67 accept\n";
    out += "    meta nfproto ipv6 udp sport 546 udp dport 547 accept\n";
    out +=
        "    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, "
        "nd-neighbor-advert, mld-listener-report, mld2-listener-report } accept\n";
  }
  out += "  }\n";

  // forward: routed traffic (containers, VMs): nothing but protected CIDRs while isolated.
  renderChainHead(out, "forward", "forward", iso);
  out += "    ip saddr @protected4 accept\n";
  out += "    ip daddr @protected4 accept\n";
  out += "    ip6 saddr @protected6 accept\n";
  out += "    ip6 daddr @protected6 accept\n";
  out += "    ip saddr @block4 drop\n";
  out += "    ip daddr @block4 drop\n";
  out += "    ip6 saddr @block6 drop\n";
  out += "    ip6 daddr @block6 drop\n";
  out += renderBlockRules(blocks, "forward");
  out += "  }\n";
  out += "}\n";
  return out;
}

struct FlowFilter::Compiled {
  Model model;
};

FlowFilter::FlowFilter(const v1::DesiredState& state, bool isolation_active)
    : compiled_(std::make_unique<const Compiled>(Compiled{buildModel(state, isolation_active)})) {}

FlowFilter::~FlowFilter() = default;
FlowFilter::FlowFilter(FlowFilter&&) noexcept = default;
FlowFilter& FlowFilter::operator=(FlowFilter&&) noexcept = default;

bool FlowFilter::kept(const Flow& flow) const { return flowKeptBy(compiled_->model, flow); }

bool flowKept(const Flow& flow, const v1::DesiredState& state, int64_t now_unix_ms) {
  return FlowFilter(state, isolationActive(state, now_unix_ms)).kept(flow);
}

bool flowKept(const Flow& flow, const v1::DesiredState& state) {
  return FlowFilter(state, state.isolation().enabled()).kept(flow);
}

}  // namespace bulkhead::agent
