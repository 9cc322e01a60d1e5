#include "controller/core/blocks.h"

#include <sys/socket.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "common/format.h"

namespace bulkhead::controller {

std::string fleetStateKey(std::string_view tenant) {
  if (tenant == "default") return kFleetStateKey;
  return fmt::format("{}:{}", kFleetStateKey, tenant);
}

std::optional<std::string> tenantOfFleetStateKey(std::string_view key) {
  const std::string_view base = kFleetStateKey;
  if (key == base) return std::string("default");
  if (key.size() > base.size() + 1 && key.substr(0, base.size()) == base &&
      key[base.size()] == ':') {
    return std::string(key.substr(base.size() + 1));
  }
  return std::nullopt;
}

namespace v1 = bulkhead::v1;

namespace {

bool overlaps(const Cidr& a, const Cidr& b) { return a.contains(b) || b.contains(a); }

Cidr must(std::string_view text) { return *parseCidr("builtin", text); }

const char* protoName(v1::Protocol p) {
  switch (p) {
    case v1::PROTOCOL_TCP: return "tcp";
    case v1::PROTOCOL_UDP: return "udp";
    default: return "any";
  }
}

const char* dirName(v1::Direction d) {
  switch (d) {
    case v1::DIRECTION_IN: return "in";
    case v1::DIRECTION_OUT: return "out";
    default: return "both";
  }
}

bool active(const v1::Block& b, int64_t now) {
  return b.expires_at_unix_ms() == 0 || b.expires_at_unix_ms() > now;
}

void setEndpoints(v1::DesiredState& s, const std::vector<v1::Endpoint>& endpoints) {
  s.clear_controller_endpoints();
  for (const auto& e : endpoints) *s.add_controller_endpoints() = e;
}

}  // namespace

std::string BlockMatch::describe() const {
  std::string out = cidr.toString();
  if (protocol != v1::PROTOCOL_ANY) out += fmt::format(" {}", protoName(protocol));
  if (port != 0) out += fmt::format(" port {}", port);
  out += fmt::format(" {}", dirName(direction));
  return out;
}

absl::StatusOr<std::vector<ProtectedCidr>> parseProtectedCidrs(std::string_view file_name,
                                                               std::string_view yaml) {
  std::vector<ProtectedCidr> out;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        fmt::format("{}:{}: {}", file_name, e.mark.line + 1, e.msg));
  }
  if (!root || root.IsNull()) return out;
  if (!root.IsMap() || !root["protected"] || !root["protected"].IsSequence()) {
    return absl::InvalidArgumentError(
        fmt::format("{}:1: protected: required, a list of {{cidr, why}}", file_name));
  }
  for (const auto& item : root["protected"]) {
    const int line = item.Mark().line + 1;
    if (!item.IsMap() || !item["cidr"] || !item["cidr"].IsScalar()) {
      return absl::InvalidArgumentError(
          fmt::format("{}:{}: cidr: required (an IPv4 or IPv6 CIDR)", file_name, line));
    }
    for (const auto& kv : item) {
      const std::string key = kv.first.as<std::string>();
      if (key != "cidr" && key != "why") {
        return absl::InvalidArgumentError(
            fmt::format("{}:{}: {}: unknown field (cidr, why)", file_name, line, key));
      }
    }
    auto c = parseCidr("cidr", item["cidr"].as<std::string>());
    if (!c.ok()) {
      return absl::InvalidArgumentError(fmt::format("{}:{}: {}", file_name, line, c.status()));
    }
    ProtectedCidr p;
    p.cidr = *c;
    p.why = item["why"] ? item["why"].as<std::string>() : "";
    p.line = line;
    out.push_back(std::move(p));
  }
  return out;
}

absl::StatusOr<BlockMatch> parseBlockMatch(const std::string& remote_cidr, v1::Protocol protocol,
                                           uint32_t port, v1::Direction direction) {
  BlockMatch m;
  auto c = parseCidr("remote_cidr", remote_cidr);
  if (!c.ok()) return c.status();
  m.cidr = *c;
  if (protocol != v1::PROTOCOL_UNSPECIFIED && protocol != v1::PROTOCOL_ANY &&
      protocol != v1::PROTOCOL_TCP && protocol != v1::PROTOCOL_UDP) {
    return absl::InvalidArgumentError(
        fmt::format("protocol: invalid value \"{}\": must be tcp or udp (or any)",
                    v1::Protocol_IsValid(protocol) ? v1::Protocol_Name(protocol)
                                                   : fmt::format("{}", static_cast<int>(protocol))));
  }
  m.protocol = protocol == v1::PROTOCOL_UNSPECIFIED ? v1::PROTOCOL_ANY : protocol;
  if (port > 65535) {
    return absl::InvalidArgumentError(
        fmt::format("port: invalid value {}: must be 1 to 65535", port));
  }
  m.port = port;
  if (!v1::Direction_IsValid(direction)) {
    return absl::InvalidArgumentError(fmt::format(
        "direction: invalid value {}: must be in, out or both", static_cast<int>(direction)));
  }
  m.direction = direction == v1::DIRECTION_UNSPECIFIED ? v1::DIRECTION_BOTH : direction;
  return m;
}

absl::Status checkBlockGuardrails(const BlockMatch& match, const BlockGuardrails& g, bool yes) {
  static const Cidr kLoop4 = must("127.0.0.0/8");
  static const Cidr kLoop6 = must("::1/128");
  static const Cidr kMappedLoop = must("::ffff:127.0.0.0/104");
  for (const Cidr& lo : {kLoop4, kLoop6, kMappedLoop}) {
    if (overlaps(match.cidr, lo)) {
      return absl::FailedPreconditionError(fmt::format(
          "remote_cidr: {} covers loopback ({}): refusing to block it; nothing was changed",
          match.cidr.toString(), lo.toString()));
    }
  }
  for (const auto& ip : g.controller_ips) {
    auto c = parseCidr("controller", ip);
    if (c.ok() && match.cidr.contains(*c)) {
      return absl::FailedPreconditionError(fmt::format(
          "remote_cidr: {} covers the controller's address {}: agents would lose their "
          "channel; nothing was changed",
          match.cidr.toString(), ip));
    }
  }
  for (const auto& p : g.protected_cidrs) {
    if (overlaps(match.cidr, p.cidr)) {
      return absl::FailedPreconditionError(fmt::format(
          "remote_cidr: {} overlaps the protected CIDR {}{}: refusing to block it; nothing was "
          "changed",
          match.cidr.toString(), p.cidr.toString(), p.why.empty() ? "" : fmt::format(" ({})", p.why)));
    }
  }
  const int limit = match.cidr.family == AF_INET ? g.confirm_prefix_v4 : g.confirm_prefix_v6;
  if (match.cidr.prefix_len < limit && !yes) {
    return absl::FailedPreconditionError(fmt::format(
        "remote_cidr: {} is wider than /{}: confirm with --yes; nothing was changed",
        match.cidr.toString(), limit));
  }
  return absl::OkStatus();
}

bool sameMatch(const v1::Block& block, const BlockMatch& match) {
  auto c = parseCidr("remote_cidr", block.remote_cidr());
  const v1::Direction d =
      block.direction() == v1::DIRECTION_UNSPECIFIED ? v1::DIRECTION_BOTH : block.direction();
  const v1::Protocol p =
      block.protocol() == v1::PROTOCOL_UNSPECIFIED ? v1::PROTOCOL_ANY : block.protocol();
  return c.ok() && *c == match.cidr && p == match.protocol &&
         block.ports().first() == match.port && d == match.direction;
}

v1::Block makeBlock(const BlockMatch& match, const std::string& id, int64_t expires_at_unix_ms,
                    const std::string& reason, const std::string& requested_by,
                    int64_t created_at_unix_ms) {
  v1::Block b;
  b.set_id(id);
  b.set_remote_cidr(match.cidr.toString());
  b.set_protocol(match.protocol);
  b.mutable_ports()->set_first(match.port);
  b.mutable_ports()->set_last(match.port);
  b.set_direction(match.direction);
  b.set_expires_at_unix_ms(expires_at_unix_ms);
  b.set_reason(reason);
  b.set_requested_by(requested_by);
  b.set_created_at_unix_ms(created_at_unix_ms);
  return b;
}

v1::DesiredState withBlock(const v1::DesiredState& current, const v1::Block& block,
                           int64_t now_unix_ms, const std::vector<v1::Endpoint>& endpoints) {
  v1::DesiredState next = current;
  next.set_generation(current.generation() + 1);
  next.clear_blocks();
  auto m = parseBlockMatch(block.remote_cidr(), block.protocol(), block.ports().first(),
                           block.direction());
  for (const auto& b : current.blocks()) {
    if (!active(b, now_unix_ms)) continue;
    if (m.ok() && sameMatch(b, *m)) continue;   // replaced
    *next.add_blocks() = b;
  }
  *next.add_blocks() = block;
  setEndpoints(next, endpoints);
  return next;
}

std::optional<v1::DesiredState> withoutBlock(const v1::DesiredState& current,
                                             const BlockMatch& match, int64_t now_unix_ms,
                                             const std::vector<v1::Endpoint>& endpoints) {
  v1::DesiredState next = current;
  next.clear_blocks();
  bool found = false;
  for (const auto& b : current.blocks()) {
    if (!active(b, now_unix_ms)) continue;
    if (sameMatch(b, match)) {
      found = true;
      continue;
    }
    *next.add_blocks() = b;
  }
  if (!found) return std::nullopt;
  next.set_generation(current.generation() + 1);
  setEndpoints(next, endpoints);
  return next;
}

std::vector<v1::Block> missingFleetBlocks(const v1::DesiredState& state,
                                          const std::vector<v1::Block>& fleet,
                                          int64_t now_unix_ms) {
  std::vector<v1::Block> out;
  for (const auto& f : fleet) {
    if (!active(f, now_unix_ms)) continue;
    bool present = std::any_of(state.blocks().begin(), state.blocks().end(),
                               [&](const v1::Block& b) { return b.id() == f.id(); });
    if (!present) out.push_back(f);
  }
  return out;
}

void readUnsetProtocolsAsAny(v1::DesiredState& state) {
  for (auto& b : *state.mutable_blocks()) {
    if (b.protocol() == v1::PROTOCOL_UNSPECIFIED) b.set_protocol(v1::PROTOCOL_ANY);
  }
  for (auto& r : *state.mutable_isolation()->mutable_exemptions()) {
    if (r.protocol() == v1::PROTOCOL_UNSPECIFIED) r.set_protocol(v1::PROTOCOL_ANY);
  }
}

v1::DesiredState agentWireState(const v1::DesiredState& state) {
  v1::DesiredState out = state;
  for (auto& b : *out.mutable_blocks()) {
    if (b.protocol() == v1::PROTOCOL_ANY) b.set_protocol(v1::PROTOCOL_UNSPECIFIED);
  }
  for (auto& r : *out.mutable_isolation()->mutable_exemptions()) {
    if (r.protocol() == v1::PROTOCOL_ANY) r.set_protocol(v1::PROTOCOL_UNSPECIFIED);
  }
  return out;
}

}  // namespace bulkhead::controller
