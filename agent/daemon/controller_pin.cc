#include "agent/daemon/controller_pin.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>

#include <fmt/ranges.h>
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

bool samePin(const PinnedController& a, const PinnedController& b) {
  return a.host == b.host && a.port == b.port && a.ips == b.ips &&
         a.pinned_at_unix_ms == b.pinned_at_unix_ms;
}

// The pin files in the state dir with their positions (controller.json: 0, controller-N.json:
// N - 1), by position.
std::vector<std::pair<size_t, std::filesystem::path>> pinFiles(
    const std::filesystem::path& state_dir) {
  std::vector<std::pair<size_t, std::filesystem::path>> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(state_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == "controller.json") {
      out.emplace_back(0, it->path());
      continue;
    }
    static constexpr std::string_view kPrefix = "controller-", kSuffix = ".json";
    if (name.size() <= kPrefix.size() + kSuffix.size() || name.rfind(kPrefix, 0) != 0 ||
        name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
      continue;
    }
    const std::string digits =
        name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
    if (digits.size() > 6 || digits.front() == '0' ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    const size_t n = std::stoul(digits);
    if (n >= 2) out.emplace_back(n - 1, it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<PinnedController> readPinFile(const std::filesystem::path& path) {
  auto text = readFile(path);
  if (!text.ok()) return absl::NotFoundError(fmt::format("no controller pin: {}", text.status()));
  auto pin = parsePin(*text);
  if (!pin.ok()) return absl::DataLossError(fmt::format("{}: {}", path.string(), pin.status()));
  return pin;
}

absl::Status removePinFile(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
  if (ec) {
    return absl::InternalError(
        fmt::format("cannot remove the stale pin {}: {}", path.string(), ec.message()));
  }
  return absl::OkStatus();
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

std::vector<std::string> grpcTargets(const std::vector<PinnedController>& pins) {
  std::vector<std::string> out;
  for (const auto& pin : pins) {
    for (auto& t : grpcTargets(pin)) out.push_back(std::move(t));
  }
  return out;
}

std::vector<v1::Endpoint> controllerEndpoints(const std::vector<PinnedController>& pins) {
  std::vector<v1::Endpoint> out;
  for (const auto& pin : pins) {
    for (const auto& ip : pin.ips) {
      const bool seen = std::any_of(out.begin(), out.end(), [&](const v1::Endpoint& e) {
        return e.ip() == ip && e.port() == pin.port;
      });
      if (seen) continue;
      v1::Endpoint ep;
      ep.set_ip(ip);
      ep.set_port(pin.port);
      out.push_back(std::move(ep));
    }
  }
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

std::filesystem::path pinPath(const std::filesystem::path& state_dir, size_t index) {
  if (index == 0) return state_dir / "controller.json";
  return state_dir / fmt::format("controller-{}.json", index + 1);
}

absl::StatusOr<PinnedController> readPin(const std::filesystem::path& state_dir) {
  return readPinFile(pinPath(state_dir));
}

std::vector<PinnedController> readPins(const std::filesystem::path& state_dir,
                                       std::vector<absl::Status>* errors) {
  std::vector<PinnedController> out;
  for (const auto& [index, path] : pinFiles(state_dir)) {
    auto pin = readPinFile(path);
    if (pin.ok()) {
      out.push_back(*std::move(pin));
    } else if (errors != nullptr) {
      errors->push_back(pin.status());
    }
  }
  return out;
}

absl::StatusOr<ControllerPins> pinControllers(const std::vector<HostPort>& controllers,
                                              const std::filesystem::path& state_dir,
                                              const Resolver& resolve, int64_t now_unix_ms) {
  const std::vector<PinnedController> previous = readPins(state_dir);
  auto previousPin = [&](const HostPort& c) -> const PinnedController* {
    for (const auto& p : previous) {
      if (p.host == c.host && p.port == c.port) return &p;
    }
    return nullptr;
  };
  ControllerPins out;
  std::vector<std::optional<PinnedController>> at(controllers.size());
  for (size_t i = 0; i < controllers.size(); ++i) {
    const HostPort& c = controllers[i];
    const PinnedController* old = previousPin(c);
    auto ips = resolve(c.host);
    if (ips.ok() && ips->empty()) {
      ips = absl::UnavailableError(fmt::format("controller name \"{}\": no address", c.host));
    }
    if (!ips.ok()) {
      if (old != nullptr) {
        at[i] = *old;
      } else {
        out.unpinned.push_back({c, ips.status()});
      }
      continue;
    }
    PinnedController pin;
    pin.host = c.host;
    pin.port = c.port;
    // v4 first, then v6, otherwise resolver order.
    std::stable_partition(ips->begin(), ips->end(), isV4Literal);
    pin.ips = *std::move(ips);
    pin.pinned_at_unix_ms =
        old != nullptr && old->ips == pin.ips ? old->pinned_at_unix_ms : now_unix_ms;
    at[i] = std::move(pin);
  }
  if (out.unpinned.size() == controllers.size()) {
    if (out.unpinned.size() == 1) return out.unpinned.front().why;
    std::vector<std::string> why;
    for (const auto& u : out.unpinned) {
      why.push_back(
          fmt::format("{}:{}: {}", u.controller.host, u.controller.port, u.why.message()));
    }
    return absl::UnavailableError(
        fmt::format("no controller can be pinned: {}", fmt::join(why, "; ")));
  }
  for (size_t i = 0; i < at.size(); ++i) {
    const std::filesystem::path path = pinPath(state_dir, i);
    if (!at[i]) {
      if (auto s = removePinFile(path); !s.ok()) return s;
      continue;
    }
    auto current = readPinFile(path);
    if (!current.ok() || !samePin(*current, *at[i])) {
      if (auto s = writeFileAtomic(path, serializePin(*at[i]), 0600); !s.ok()) return s;
    }
    out.pins.push_back(*at[i]);
  }
  for (const auto& [index, path] : pinFiles(state_dir)) {
    if (index < controllers.size()) continue;
    if (auto s = removePinFile(path); !s.ok()) return s;
  }
  return out;
}

absl::StatusOr<PinnedController> pinController(const HostPort& controller,
                                               const std::filesystem::path& state_dir,
                                               const Resolver& resolve, int64_t now_unix_ms) {
  auto pins = pinControllers({controller}, state_dir, resolve, now_unix_ms);
  if (!pins.ok()) return pins.status();
  return pins->pins.front();
}

}  // namespace bulkhead::agent
