// Pure parsers for values that operators type: durations, endpoints, labels, selectors, CIDRs.
// No I/O. Every error message names the field and the value at fault.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulkhead {

// "500ms", "3s", "5m", "2h", "1d", or a combination such as "1h30m". Zero and negative
// durations are rejected.
absl::StatusOr<std::chrono::milliseconds> parseDuration(std::string_view field,
                                                        std::string_view text);

struct HostPort {
  std::string host;  // name or IP literal, without brackets
  uint16_t port = 0;
};

// "host:port", "1.2.3.4:443", "[fd77::1]:443". The port must be 1..65535.
absl::StatusOr<HostPort> parseHostPort(std::string_view field, std::string_view text);

// Label keys and values: [A-Za-z0-9._/-]{1,63}.
absl::StatusOr<std::pair<std::string, std::string>> parseLabel(std::string_view field,
                                                               std::string_view text);

using Labels = std::map<std::string, std::string>;

// "k=v[,k=v]...": every pair must match. An empty text is rejected.
absl::StatusOr<Labels> parseSelector(std::string_view field, std::string_view text);
bool selectorMatches(const Labels& selector, const Labels& labels);
// "k=v,k=v" in key order; empty for no labels.
std::string labelsText(const Labels& labels);

struct Cidr {
  int family = 0;                  // AF_INET or AF_INET6
  std::array<uint8_t, 16> addr{};  // network address, host bits zero
  int prefix_len = 0;
  std::string toString() const;  // canonical, e.g. "10.77.0.0/16", "fd77::/16"
  bool contains(const Cidr& other) const;
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// "10.77.0.5", "10.77.0.0/16", "fd77::1", "fd77::/16". An address without a prefix is a
// host route (/32 or /128). Host bits set below the prefix are rejected (likely a typo).
absl::StatusOr<Cidr> parseCidr(std::string_view field, std::string_view text);

// A port number 1..65535.
absl::StatusOr<uint16_t> parsePort(std::string_view field, std::string_view text);

}  // namespace bulkhead
