#include "common/parse.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include "absl/status/status.h"
#include "common/format.h"

namespace bulkhead {
namespace {

absl::Status invalid(std::string_view field, std::string_view value, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("{}: invalid value \"{}\": {}", field, value, why));
}

// Whole-string decimal integer; no sign, no spaces.
template <typename T>
bool parseInt(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool isLabelChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
         c == '/';
}

bool isLabelToken(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!isLabelChar(c)) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::chrono::milliseconds> parseDuration(std::string_view field,
                                                        std::string_view text) {
  if (text.empty()) return invalid(field, text, "empty duration (examples: 30s, 5m, 2h, 1d)");
  int64_t total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (start == i) return invalid(field, text, "expected a number (examples: 30s, 5m, 2h, 1d)");
    int64_t n = 0;
    if (!parseInt(text.substr(start, i - start), &n) || n > 1'000'000'000) {
      return invalid(field, text, "number out of range");
    }
    size_t ustart = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(ustart, i - ustart);
    int64_t mult = 0;
    if (unit == "ms")
      mult = 1;
    else if (unit == "s")
      mult = 1000;
    else if (unit == "m")
      mult = 60'000;
    else if (unit == "h")
      mult = 3'600'000;
    else if (unit == "d")
      mult = 86'400'000;
    else
      return invalid(field, text, "unknown or missing unit (use ms, s, m, h or d)");
    total_ms += n * mult;
    if (total_ms > int64_t{366} * 86'400'000) return invalid(field, text, "longer than a year");
  }
  if (total_ms <= 0) return invalid(field, text, "must be greater than zero");
  return std::chrono::milliseconds(total_ms);
}

absl::StatusOr<HostPort> parseHostPort(std::string_view field, std::string_view text) {
  HostPort hp;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return invalid(field, text, "expected [IPv6]:PORT");
    }
    hp.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return invalid(field, text, "expected HOST:PORT");
    }
    if (text.substr(0, colon).find(':') != std::string_view::npos) {
      return invalid(field, text, "IPv6 addresses must be written [ADDR]:PORT");
    }
    hp.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  if (hp.host.empty()) return invalid(field, text, "empty host");
  auto port = parsePort(field, port_text);
  if (!port.ok()) return port.status();
  hp.port = *port;
  return hp;
}

absl::StatusOr<uint16_t> parsePort(std::string_view field, std::string_view text) {
  int port = 0;
  if (!parseInt(text, &port) || port < 1 || port > 65535) {
    return invalid(field, text, "port must be a number from 1 to 65535");
  }
  return static_cast<uint16_t>(port);
}

absl::StatusOr<std::pair<std::string, std::string>> parseLabel(std::string_view field,
                                                               std::string_view text) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos) return invalid(field, text, "expected KEY=VALUE");
  std::string_view key = text.substr(0, eq);
  std::string_view value = text.substr(eq + 1);
  if (!isLabelToken(key)) {
    return invalid(field, text, "key must be 1-63 characters of [A-Za-z0-9._/-]");
  }
  if (!isLabelToken(value)) {
    return invalid(field, text, "value must be 1-63 characters of [A-Za-z0-9._/-]");
  }
  return std::make_pair(std::string(key), std::string(value));
}

absl::StatusOr<Labels> parseSelector(std::string_view field, std::string_view text) {
  if (text.empty()) return invalid(field, text, "empty selector (expected k=v[,k=v])");
  Labels out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = std::min(text.find(',', start), text.size());
    auto kv = parseLabel(field, text.substr(start, comma - start));
    start = comma + 1;
    if (!kv.ok()) return kv.status();
    out[kv->first] = kv->second;
  }
  return out;
}

bool selectorMatches(const Labels& selector, const Labels& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

absl::StatusOr<Cidr> parseCidr(std::string_view field, std::string_view text) {
  Cidr c;
  std::string addr_text(text);
  int max_len = 0;
  size_t slash = text.find('/');
  std::string_view prefix_text;
  if (slash != std::string_view::npos) {
    addr_text = std::string(text.substr(0, slash));
    prefix_text = text.substr(slash + 1);
  }
  if (inet_pton(AF_INET, addr_text.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET;
    max_len = 32;
  } else if (inet_pton(AF_INET6, addr_text.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET6;
    max_len = 128;
  } else {
    return invalid(field, text, "not an IPv4 or IPv6 address or CIDR");
  }
  c.prefix_len = max_len;
  if (slash != std::string_view::npos) {
    if (!parseInt(prefix_text, &c.prefix_len) || c.prefix_len < 0 || c.prefix_len > max_len) {
      return invalid(field, text, fmt::format("prefix length must be 0 to {}", max_len));
    }
  }
  for (int bit = c.prefix_len; bit < max_len; ++bit) {
    if (c.addr[bit / 8] & (0x80 >> (bit % 8))) {
      return invalid(field, text, "address has bits set beyond the prefix length");
    }
  }
  return c;
}

std::string Cidr::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, addr.data(), buf, sizeof buf);
  return fmt::format("{}/{}", buf, prefix_len);
}

bool Cidr::contains(const Cidr& other) const {
  if (family != other.family || other.prefix_len < prefix_len) return false;
  for (int bit = 0; bit < prefix_len; ++bit) {
    uint8_t mask = 0x80 >> (bit % 8);
    if ((addr[bit / 8] & mask) != (other.addr[bit / 8] & mask)) return false;
  }
  return true;
}

std::string labelsText(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ',';
    out += k;
    out += '=';
    out += v;
  }
  return out;
}

}  // namespace bulkhead
