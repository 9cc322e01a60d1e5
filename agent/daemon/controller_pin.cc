#include "agent/daemon/controller_pin.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/resolve.h"
#include "common/tls/tls.h"

namespace bulkhead::agent {
namespace {

bool isV6Literal(const std::string& ip) {
  in6_addr a{};
  return inet_pton(AF_INET6, ip.c_str(), &a) == 1;
}

bool isV4Literal(const std::string& ip) {
  in_addr a{};
  return inet_pton(AF_INET, ip.c_str(), &a) == 1;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> resolveWithGetaddrinfo(const std::string& host) {
  if (isV4Literal(host) || isV6Literal(host)) return std::vector<std::string>{host};
  auto ips = resolveHost(host);
  if (!ips.ok()) {
    return absl::UnavailableError(fmt::format("controller name: {}", ips.status().message()));
  }
  return ips;
}

std::vector<std::string> grpcTargets(const PinnedController& pin) {
  std::string v4, v6;
  for (const auto& ip : pin.ips) {
    if (isV4Literal(ip)) {
      v4 += fmt::format("{}{}:{}", v4.empty() ? "ipv4:" : ",", ip, pin.port);
    } else if (isV6Literal(ip)) {
      v6 += fmt::format("{}[{}]:{}", v6.empty() ? "ipv6:" : ",", ip, pin.port);
    }
  }
  std::vector<std::string> out;
  if (!v4.empty()) out.push_back(v4);
  if (!v6.empty()) out.push_back(v6);
  return out;
}

std::string serializePin(const PinnedController& pin) {
  nlohmann::json j = {{"host", pin.host},
                      {"port", pin.port},
                      {"ips", pin.ips},
                      {"pinned_at_unix_ms", pin.pinned_at_unix_ms}};
  return j.dump(2) + "\n";
}

absl::StatusOr<PinnedController> parsePin(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError("controller pin: not a JSON object");
  }
  PinnedController p;
  if (!j.contains("host") || !j["host"].is_string()) {
    return absl::DataLossError("controller pin: \"host\" missing or not a string");
  }
  p.host = j["host"].get<std::string>();
  if (!j.contains("port") || !j["port"].is_number_unsigned() || j["port"].get<uint32_t>() == 0 ||
      j["port"].get<uint32_t>() > 65535) {
    return absl::DataLossError("controller pin: \"port\" missing or out of range");
  }
  p.port = static_cast<uint16_t>(j["port"].get<uint32_t>());
  if (!j.contains("ips") || !j["ips"].is_array()) {
    return absl::DataLossError("controller pin: \"ips\" missing or not an array");
  }
  for (const auto& ip : j["ips"]) {
    if (!ip.is_string() || !(isV4Literal(ip.get<std::string>()) || isV6Literal(ip.get<std::string>()))) {
      return absl::DataLossError(fmt::format("controller pin: \"ips\" holds a non-IP value {}",
                                             ip.dump()));
    }
    p.ips.push_back(ip.get<std::string>());
  }
  if (p.ips.empty()) return absl::DataLossError("controller pin: \"ips\" is empty");
  if (j.contains("pinned_at_unix_ms") && j["pinned_at_unix_ms"].is_number_integer()) {
    p.pinned_at_unix_ms = j["pinned_at_unix_ms"].get<int64_t>();
  }
  return p;
}

std::filesystem::path pinPath(const std::filesystem::path& state_dir) {
  return state_dir / "controller.json";
}

absl::StatusOr<PinnedController> readPin(const std::filesystem::path& state_dir) {
  auto text = readFile(pinPath(state_dir));
  if (!text.ok()) return absl::NotFoundError(fmt::format("no controller pin: {}", text.status()));
  auto pin = parsePin(*text);
  if (!pin.ok()) {
    return absl::DataLossError(fmt::format("{}: {}", pinPath(state_dir).string(), pin.status()));
  }
  return pin;
}

absl::StatusOr<PinnedController> pinController(const HostPort& controller,
                                               const std::filesystem::path& state_dir,
                                               const Resolver& resolve, int64_t now_unix_ms) {
  auto ips = resolve(controller.host);
  if (!ips.ok()) {
    auto old = readPin(state_dir);
    if (old.ok() && old->host == controller.host && old->port == controller.port) return old;
    return ips.status();
  }
  PinnedController pin;
  pin.host = controller.host;
  pin.port = controller.port;
  // v4 first, then v6, otherwise resolver order.
  std::stable_partition(ips->begin(), ips->end(), isV4Literal);
  pin.ips = *std::move(ips);
  pin.pinned_at_unix_ms = now_unix_ms;
  auto old = readPin(state_dir);
  if (!old.ok() || old->host != pin.host || old->port != pin.port || old->ips != pin.ips) {
    if (auto s = writeFileAtomic(pinPath(state_dir), serializePin(pin), 0600); !s.ok()) return s;
  } else {
    pin.pinned_at_unix_ms = old->pinned_at_unix_ms;
  }
  return pin;
}

}  // namespace bulkhead::agent
