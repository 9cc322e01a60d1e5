#include "agent/core/hello.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>

#include "common/lines.h"

namespace bulkhead::agent {

bool isGlobalAddress(const InterfaceAddress& a) {
  if (a.loopback_interface) return false;
  const auto& b = a.addr;
  if (a.family == AF_INET) {
    if (b[0] == 0 || b[0] == 127) return false;                 // unspecified "this net", loopback
    if (b[0] == 169 && b[1] == 254) return false;               // link-local
    if (b[0] >= 224) return false;                              // multicast, reserved, broadcast
    return true;
  }
  if (a.family == AF_INET6) {
    bool all_zero = std::all_of(b.begin(), b.begin() + 15, [](uint8_t x) { return x == 0; });
    if (all_zero && (b[15] == 0 || b[15] == 1)) return false;   // :: and ::1
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;    // fe80::/10
    if (b[0] == 0xff) return false;                             // multicast
    bool v4_mapped = std::all_of(b.begin(), b.begin() + 10, [](uint8_t x) { return x == 0; }) &&
                     b[10] == 0xff && b[11] == 0xff;
    if (v4_mapped) return false;
    return true;
  }
  return false;
}

std::string addressToCidr(const InterfaceAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  int family = a.family == AF_INET6 ? AF_INET6 : AF_INET;
  if (inet_ntop(family, a.addr.data(), buf, sizeof buf) == nullptr) return "";
  return fmt::format("{}/{}", buf, a.prefix_len);
}

namespace {

// os-release values: optionally quoted with " or ', backslash escapes inside double quotes.
std::string unquote(std::string_view v) {
  while (!v.empty() && (v.back() == '\r' || v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
    char q = v.front();
    v = v.substr(1, v.size() - 2);
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (q == '"' && v[i] == '\\' && i + 1 < v.size()) {
        out.push_back(v[++i]);
      } else {
        out.push_back(v[i]);
      }
    }
    return out;
  }
  return std::string(v);
}

std::string osReleaseValue(std::string_view text, std::string_view key) {
  for (std::string_view line : splitLines(text)) {
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == '=') {
      return unquote(line.substr(key.size() + 1));
    }
  }
  return "";
}

// `text` as printable ASCII of at most `max` bytes: other bytes (and spaces unless `spaces`)
// become '?'.
std::string printable(std::string_view text, size_t max, bool spaces) {
  std::string out(text.substr(0, max));
  for (char& ch : out) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7e || (c == ' ' && !spaces)) ch = '?';
  }
  return out;
}

}  // namespace

std::string prettyNameFromOsRelease(std::string_view text) {
  std::string pretty = osReleaseValue(text, "PRETTY_NAME");
  if (!pretty.empty()) return pretty;
  std::string name = osReleaseValue(text, "NAME");
  std::string version = osReleaseValue(text, "VERSION");
  if (!name.empty() && !version.empty()) return fmt::format("{} {}", name, version);
  if (!name.empty()) return name;
  return "Linux";
}

std::string osDescription(const HostFacts& facts) {
  std::string os = prettyNameFromOsRelease(facts.os_release);
  if (facts.kernel_release.empty()) return os;
  return fmt::format("{}, kernel {}", os, facts.kernel_release);
}

bulkhead::v1::Hello buildHello(const HelloInputs& in) {
  bulkhead::v1::Hello h;
  h.set_host_id(in.host_id);
  h.set_hostname(printable(in.facts.hostname, 253, false));
  std::vector<std::string> seen;
  for (const auto& a : in.facts.addresses) {
    if (!isGlobalAddress(a)) continue;
    std::string cidr = addressToCidr(a);
    if (cidr.empty() || std::find(seen.begin(), seen.end(), cidr) != seen.end()) continue;
    seen.push_back(cidr);
    h.add_addresses(cidr);
  }
  for (const auto& [k, v] : in.labels) (*h.mutable_labels())[k] = v;
  h.set_os(printable(osDescription(in.facts), 256, true));
  h.set_agent_version(in.agent_version);
  h.mutable_protocol()->set_major(in.protocol.major);
  h.mutable_protocol()->set_minor(in.protocol.minor);
  h.set_enforced_generation(in.enforced_generation);
  h.set_ruleset_hash(in.ruleset_hash);
  h.set_sent_at_unix_ms(in.now_unix_ms);
  return h;
}

}  // namespace bulkhead::agent
