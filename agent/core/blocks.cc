#include "agent/core/blocks.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <utility>

#include "common/format.h"
#include "common/parse.h"

namespace bulkhead::agent {
namespace {

namespace v1 = bulkhead::v1;

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr const char* kTable = "inet bulkhead";

std::string addrText(int family, const std::array<uint8_t, 16>& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, addr.data(), buf, sizeof buf);
  return buf;
}

std::array<uint8_t, 16> maskBytes(int prefix_len) {
  std::array<uint8_t, 16> m{};
  for (int bit = 0; bit < prefix_len; ++bit) m[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
  return m;
}

bool isAny(v1::Protocol p) { return p == v1::PROTOCOL_ANY || p == v1::PROTOCOL_UNSPECIFIED; }

bool wantsIn(v1::Direction d) { return d != v1::DIRECTION_OUT; }
bool wantsOut(v1::Direction d) { return d != v1::DIRECTION_IN; }

std::vector<uint8_t> protosOf(const v1::Block& b) {
  switch (b.protocol()) {
    case v1::PROTOCOL_TCP: return {kTcp};
    case v1::PROTOCOL_UDP: return {kUdp};
    case v1::PROTOCOL_UNSPECIFIED:
    case v1::PROTOCOL_ANY: return b.ports().first() == 0 ? std::vector<uint8_t>{} :
                                                           std::vector<uint8_t>{kTcp, kUdp};
    default: return {};
  }
}

// Parsed set name: blk<F>_<dir>_<kind>_<L>.
struct SetShape {
  int family = AF_INET;
  bool in = true;
  std::string kind;   // addr | proto | port
  int prefix_len = 32;
};

std::optional<SetShape> parseSetName(const std::string& name) {
  SetShape s;
  char fam = 0;
  char dir[4] = {};
  char kind[6] = {};
  int len = 0;
  if (std::sscanf(name.c_str(), "blk%c_%3[a-z]_%5[a-z]_%d", &fam, dir, kind, &len) != 4) {
    return std::nullopt;
  }
  s.family = fam == '6' ? AF_INET6 : AF_INET;
  s.in = std::string(dir) == "in";
  s.kind = kind;
  s.prefix_len = len;
  return s;
}

std::string setType(const SetShape& s) {
  std::string t = s.family == AF_INET ? "ipv4_addr" : "ipv6_addr";
  if (s.kind == "proto" || s.kind == "port") t += " . inet_proto";
  if (s.kind == "port") t += " . inet_service";
  return t;
}

std::string timeoutText(int64_t expires_at, int64_t now) {
  if (expires_at == 0) return "";
  return fmt::format(" timeout {}ms", std::max<int64_t>(1, expires_at - now));
}

struct ParsedBlock {
  Cidr cidr;
  bool in = true, out = true;
  std::vector<uint8_t> protos;   // empty = any protocol
  uint16_t port = 0;             // 0 = any
};

std::optional<ParsedBlock> parseBlock(const v1::Block& b) {
  auto c = parseCidr("remote_cidr", b.remote_cidr());
  if (!c.ok()) return std::nullopt;
  ParsedBlock p;
  p.cidr = *c;
  p.in = wantsIn(b.direction());
  p.out = wantsOut(b.direction());
  p.port = static_cast<uint16_t>(b.ports().first());
  if (b.protocol() == v1::PROTOCOL_TCP) p.protos = {kTcp};
  if (b.protocol() == v1::PROTOCOL_UDP) p.protos = {kUdp};
  return p;
}

Cidr hostOf(int family, const std::array<uint8_t, 16>& addr) {
  Cidr c;
  c.family = family == AF_INET6 ? AF_INET6 : AF_INET;
  c.addr = addr;
  if (c.family == AF_INET) std::fill(c.addr.begin() + 4, c.addr.end(), 0);
  c.prefix_len = c.family == AF_INET ? 32 : 128;
  return c;
}

}  // namespace

absl::Status validateBlocks(const v1::DesiredState& state) {
  for (int i = 0; i < state.blocks_size(); ++i) {
    const auto& b = state.blocks(i);
    const std::string field = fmt::format("blocks[{}]", i);
    auto c = parseCidr(field + ".remote_cidr", b.remote_cidr());
    if (!c.ok()) return c.status();
    if (!v1::Direction_IsValid(b.direction())) {
      return absl::InvalidArgumentError(fmt::format("{}.direction: invalid value {}", field,
                                                    static_cast<int>(b.direction())));
    }
    if (!isAny(b.protocol()) && b.protocol() != v1::PROTOCOL_TCP &&
        b.protocol() != v1::PROTOCOL_UDP) {
      return absl::InvalidArgumentError(fmt::format(
          "{}.protocol: invalid value {}: must be any, tcp or udp", field,
          v1::Protocol_Name(b.protocol())));
    }
    if (b.ports().first() != b.ports().last() || b.ports().first() > 65535) {
      return absl::InvalidArgumentError(
          fmt::format("{}.ports: invalid value \"{}-{}\": a block matches one port 1..65535 "
                      "or any (0-0)",
                      field, b.ports().first(), b.ports().last()));
    }
  }
  return absl::OkStatus();
}

bool blockActive(const v1::Block& block, int64_t now_unix_ms) {
  return block.expires_at_unix_ms() == 0 || block.expires_at_unix_ms() > now_unix_ms;
}

BlockElements blockElements(const v1::DesiredState& state, int64_t now_unix_ms) {
  BlockElements out;
  auto put = [&](const std::string& set, const std::string& key, int64_t expires) {
    auto [it, fresh] = out[set].emplace(key, expires);
    if (!fresh && it->second != 0) it->second = expires == 0 ? 0 : std::max(it->second, expires);
  };
  for (const auto& b : state.blocks()) {
    if (!blockActive(b, now_unix_ms)) continue;
    auto c = parseCidr("remote_cidr", b.remote_cidr());
    if (!c.ok() || b.ports().first() != b.ports().last() || b.ports().first() > 65535) continue;
    const std::string fam = c->family == AF_INET ? "4" : "6";
    const std::string addr = addrText(c->family, c->addr);
    const uint32_t port = b.ports().first();
    std::vector<uint8_t> protos = protosOf(b);
    if (!isAny(b.protocol()) && protos.empty()) continue;   // icmp: invalid
    std::string kind = protos.empty() ? "addr" : port == 0 ? "proto" : "port";
    std::vector<std::string> keys;
    if (protos.empty()) {
      keys.push_back(addr);
    } else {
      for (uint8_t p : protos) {
        // The protocol's number, not its name: see protoText in ruleset.cc.
        keys.push_back(port == 0 ? fmt::format("{} . {}", addr, static_cast<int>(p))
                                 : fmt::format("{} . {} . {}", addr, static_cast<int>(p), port));
      }
    }
    for (const char* dir : {"in", "out"}) {
      bool want = std::string(dir) == "in" ? wantsIn(b.direction()) : wantsOut(b.direction());
      if (!want) continue;
      const std::string set = fmt::format("blk{}_{}_{}_{}", fam, dir, kind, c->prefix_len);
      for (const auto& k : keys) put(set, k, b.expires_at_unix_ms());
    }
  }
  return out;
}

std::string renderBlockSets(const BlockElements& elements, int64_t now_unix_ms) {
  std::string out;
  for (const auto& [name, elems] : elements) {
    auto shape = parseSetName(name);
    if (!shape) continue;
    out += fmt::format("  set {} {{\n    type {}\n    flags timeout\n", name, setType(*shape));
    if (!elems.empty()) {
      out += "    elements = {\n";
      size_t i = 0;
      for (const auto& [key, expires] : elems) {
        out += fmt::format("      {}{}{}\n", key, timeoutText(expires, now_unix_ms),
                           ++i < elems.size() ? "," : "");
      }
      out += "    }\n";
    }
    out += "  }\n";
  }
  return out;
}

std::string renderBlockRules(const BlockElements& elements, const std::string& chain) {
  std::string out;
  for (const auto& [name, elems] : elements) {
    auto s = parseSetName(name);
    if (!s) continue;
    // input sees packets from the remote (in sets), output packets to it (out sets); forward
    // sees both.
    if ((chain == "input" && !s->in) || (chain == "output" && s->in)) continue;
    const bool v4 = s->family == AF_INET;
    std::string match = fmt::format("{} {}", v4 ? "ip" : "ip6", s->in ? "saddr" : "daddr");
    if (s->prefix_len < (v4 ? 32 : 128)) {
      match += fmt::format(" & {}", addrText(s->family, maskBytes(s->prefix_len)));
    }
    if (s->kind == "proto" || s->kind == "port") match += " . meta l4proto";
    if (s->kind == "port") match += " . th dport";
    out += fmt::format("    {} @{} drop\n", match, name);
  }
  return out;
}

std::optional<std::string> blockUpdateBatch(const BlockElements& before, const BlockElements& after,
                                            int64_t now_unix_ms) {
  if (before.size() != after.size() ||
      !std::equal(before.begin(), before.end(), after.begin(),
                  [](const auto& a, const auto& b) { return a.first == b.first; })) {
    return std::nullopt;
  }
  std::string dels, adds;
  for (const auto& [name, old_elems] : before) {
    const auto& new_elems = after.at(name);
    std::vector<std::string> del, add;
    // Both maps are sorted by key: one merge walk, no lookups.
    auto o = old_elems.begin();
    auto n = new_elems.begin();
    while (o != old_elems.end() || n != new_elems.end()) {
      if (n == new_elems.end() || (o != old_elems.end() && o->first < n->first)) {
        if (o->second == 0 || o->second > now_unix_ms) del.push_back(o->first);   // gone
        ++o;
      } else if (o == old_elems.end() || n->first < o->first) {
        add.push_back(n->first + timeoutText(n->second, now_unix_ms));           // new
        ++n;
      } else {
        if (o->second != n->second) {                                            // new expiry
          // Expired by now: the kernel already dropped it (a delete would abort the batch).
          if (o->second == 0 || o->second > now_unix_ms) del.push_back(o->first);
          add.push_back(n->first + timeoutText(n->second, now_unix_ms));
        }
        ++o;
        ++n;
      }
    }
    if (!del.empty()) {
      dels += fmt::format("delete element {} {} {{ {} }}\n", kTable, name, fmt::join(del, ", "));
    }
    if (!add.empty()) {
      adds += fmt::format("add element {} {} {{ {} }}\n", kTable, name, fmt::join(add, ", "));
    }
  }
  return dels + adds;
}

bool blocksAdded(const BlockElements& before, const BlockElements& after) {
  for (const auto& [name, elems] : after) {
    auto b = before.find(name);
    for (const auto& [key, expires] : elems) {
      if (b == before.end()) return true;
      auto it = b->second.find(key);
      if (it == b->second.end() || it->second != expires) return true;
    }
  }
  return false;
}

int64_t nextBlockExpiry(const BlockElements& elements, int64_t now_unix_ms) {
  int64_t next = 0;
  for (const auto& [name, elems] : elements) {
    for (const auto& [key, expires] : elems) {
      if (expires > now_unix_ms && (next == 0 || expires < next)) next = expires;
    }
  }
  return next;
}

struct BlockMatcher::Compiled {
  std::vector<ParsedBlock> blocks;
};

BlockMatcher::BlockMatcher(const v1::DesiredState& state, int64_t now_unix_ms) {
  auto c = std::make_unique<Compiled>();
  for (const auto& b : state.blocks()) {
    if (!blockActive(b, now_unix_ms)) continue;
    if (auto p = parseBlock(b)) c->blocks.push_back(*std::move(p));
  }
  compiled_ = std::move(c);
}

BlockMatcher::~BlockMatcher() = default;
BlockMatcher::BlockMatcher(BlockMatcher&&) noexcept = default;
BlockMatcher& BlockMatcher::operator=(BlockMatcher&&) noexcept = default;

bool BlockMatcher::empty() const { return compiled_->blocks.empty(); }

bool BlockMatcher::blocked(const Flow& flow) const {
  const Cidr local = hostOf(flow.family, flow.local_addr);
  const Cidr remote = hostOf(flow.family, flow.remote_addr);
  const uint8_t proto = static_cast<uint8_t>(flow.proto);
  for (const auto& b : compiled_->blocks) {
    if (!b.protos.empty() &&
        std::find(b.protos.begin(), b.protos.end(), proto) == b.protos.end()) {
      continue;
    }
    if (b.port != 0 && flow.proto != FlowProto::kTcp && flow.proto != FlowProto::kUdp) continue;
    auto portOk = [&](uint16_t p) { return b.port == 0 || p == b.port; };
    // A packet src -> dst with destination port `dport`: in-blocks match src, out-blocks dst.
    auto packet = [&](const Cidr& src, const Cidr& dst, uint16_t dport, bool in_hook,
                      bool out_hook) {
      if (!portOk(dport)) return false;
      return (in_hook && b.in && b.cidr.contains(src)) ||
             (out_hook && b.out && b.cidr.contains(dst));
    };
    if (flow.forwarded) {
      if (packet(local, remote, flow.remote_port, true, true) ||
          packet(remote, local, flow.local_port, true, true)) {
        return true;
      }
    } else if (packet(remote, local, flow.local_port, true, false) ||
               packet(local, remote, flow.remote_port, false, true)) {
      return true;
    }
  }
  return false;
}

}  // namespace bulkhead::agent
