#include "controller/core/hello.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <string_view>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/parse.h"

namespace bulkhead::controller {

namespace {

// A value quoted for an error message: at most 80 bytes, non-printables as \xNN.
std::string quoted(std::string_view v) {
  std::string out = "\"";
  for (size_t i = 0; i < v.size() && i < 80; ++i) {
    const auto c = static_cast<unsigned char>(v[i]);
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (v.size() > 80) out += "...";
  return out + "\"";
}

absl::Status invalid(std::string_view field, std::string_view value, std::string_view why) {
  return absl::InvalidArgumentError(
      fmt::format("hello.{}: invalid value {}: {}", field, quoted(value), why));
}

bool printableAscii(std::string_view v, bool spaces) {
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c > 0x7e || c < 0x20 || (c == ' ' && !spaces)) return false;
  }
  return true;
}

absl::Status checkText(std::string_view field, std::string_view v, size_t max, bool spaces) {
  if (v.size() > max) {
    return invalid(field, v, fmt::format("{} bytes, more than {}", v.size(), max));
  }
  if (!printableAscii(v, spaces)) {
    return invalid(field, v,
                   spaces ? "only printable ASCII is accepted"
                          : "only printable ASCII without spaces is accepted");
  }
  return absl::OkStatus();
}

// "10.77.0.11/16", "fd77::11/64" or a bare address: an interface address, so bits beyond the
// prefix are the host's own (unlike an operator's CIDR).
absl::Status checkAddress(std::string_view field, std::string_view text) {
  if (text.size() > INET6_ADDRSTRLEN + 4) return invalid(field, text, "too long for an address");
  const size_t slash = text.find('/');
  const std::string ip(text.substr(0, slash));
  std::array<unsigned char, 16> b{};
  int max_len = 0;
  bool loopback = false, unspecified = false;
  if (inet_pton(AF_INET, ip.c_str(), b.data()) == 1) {
    max_len = 32;
    loopback = b[0] == 127;
    unspecified = b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0;
  } else if (inet_pton(AF_INET6, ip.c_str(), b.data()) == 1) {
    max_len = 128;
    static constexpr std::array<unsigned char, 16> kZero{};
    static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const bool zero15 = std::memcmp(b.data(), kZero.data(), 15) == 0;
    loopback = (zero15 && b[15] == 1) || (std::memcmp(b.data(), kMapped, 12) == 0 && b[12] == 127);
    unspecified = zero15 && b[15] == 0;
  } else {
    return invalid(field, text, "not an IPv4 or IPv6 address with a prefix length");
  }
  if (slash != std::string_view::npos) {
    const std::string_view prefix = text.substr(slash + 1);
    int len = -1;
    if (!prefix.empty() && prefix.size() <= 3 &&
        prefix.find_first_not_of("0123456789") == std::string_view::npos) {
      len = std::stoi(std::string(prefix));
    }
    if (len < 0 || len > max_len) {
      return invalid(field, text, fmt::format("prefix length must be 0 to {}", max_len));
    }
  }
  if (loopback) return invalid(field, text, "a loopback address names no host");
  if (unspecified) return invalid(field, text, "the unspecified address names no host");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HelloInfo> helloInfoFrom(const bulkhead::v1::Hello& hello) {
  if (static_cast<size_t>(hello.addresses_size()) > kMaxHelloAddresses) {
    return absl::InvalidArgumentError(fmt::format("hello.addresses: {} addresses, more than {}",
                                                  hello.addresses_size(), kMaxHelloAddresses));
  }
  if (static_cast<size_t>(hello.labels_size()) > kMaxHelloLabels) {
    return absl::InvalidArgumentError(
        fmt::format("hello.labels: {} labels, more than {}", hello.labels_size(), kMaxHelloLabels));
  }
  HelloInfo info;
  for (int i = 0; i < hello.addresses_size(); ++i) {
    if (auto s = checkAddress(fmt::format("addresses[{}]", i), hello.addresses(i)); !s.ok()) {
      return s;
    }
    info.addresses.push_back(hello.addresses(i));
  }
  for (const auto& [k, v] : hello.labels()) {
    const std::string text = fmt::format("{}={}", k, v);
    auto label = parseLabel("hello.labels", text);
    // A key holding '=' would parse as another split: compare what came back.
    if (!label.ok() || label->first != k) {
      return invalid("labels", text, "expected KEY=VALUE, each 1-63 characters of [A-Za-z0-9._/-]");
    }
    info.labels[k] = v;
  }
  if (auto s = checkText("hostname", hello.hostname(), kMaxHostnameBytes, false); !s.ok()) {
    return s;
  }
  if (auto s = checkText("os", hello.os(), kMaxOsBytes, true); !s.ok()) return s;
  if (auto s = checkText("agent_version", hello.agent_version(), kMaxAgentVersionBytes, true);
      !s.ok()) {
    return s;
  }
  const std::string& hash = hello.ruleset_hash();
  if (hash.size() > 64 || hash.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return invalid("ruleset_hash", hash, "expected up to 64 lowercase hex digits");
  }
  info.hostname = hello.hostname();
  info.os = hello.os();
  info.agent_version = hello.agent_version();
  info.enforced_generation = hello.enforced_generation();
  info.ruleset_hash = hash;
  return info;
}

}  // namespace bulkhead::controller
