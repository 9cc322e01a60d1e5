#include "controller/core/containment.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/status/status.h"
#include "common/format.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

absl::StatusOr<std::vector<std::string>> resolveTargets(
    const std::map<std::string, TargetHost>& known, const TargetRequest& request,
    uint32_t limit) {
  if (request.hosts.empty() && request.selector.empty()) {
    return absl::InvalidArgumentError("targets: name one or more hosts, or a selector");
  }
  if (!request.hosts.empty() && !request.selector.empty()) {
    return absl::InvalidArgumentError(
        fmt::format("targets: give hosts or a selector, not both (selector \"{}\")",
                    request.selector));
  }
  std::vector<std::string> out;
  if (!request.hosts.empty()) {
    std::set<std::string> seen;
    std::vector<std::string> unknown;
    for (const auto& h : request.hosts) {
      if (!known.count(h)) {
        unknown.push_back(h);
        continue;
      }
      if (seen.insert(h).second) out.push_back(h);
    }
    if (unknown.size() == 1) {
      return absl::NotFoundError(fmt::format("unknown host \"{}\"", unknown[0]));
    }
    if (!unknown.empty()) {
      std::string names;
      for (const auto& u : unknown) names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", u);
      return absl::NotFoundError(fmt::format("unknown hosts {}", names));
    }
    return out;
  }
  auto selector = parseSelector("selector", request.selector);
  if (!selector.ok()) return selector.status();
  for (const auto& [id, h] : known) {
    if (selectorMatches(*selector, h.labels)) out.push_back(id);
  }
  if (out.empty()) {
    return absl::NotFoundError(
        fmt::format("selector \"{}\" matches no host", request.selector));
  }
  if (out.size() > limit && !request.yes) {
    return absl::FailedPreconditionError(fmt::format(
        "selector \"{}\" matches {} hosts, more than the limit of {}: confirm with --yes",
        request.selector, out.size(), limit));
  }
  return out;
}

absl::StatusOr<std::vector<const ExemptionSet*>> exemptionSetsFor(
    const PolicyLibrary& library, const Labels& host_labels,
    const std::vector<std::string>& requested, bool no_defaults) {
  return selectSets(library, host_labels, requested, !no_defaults);
}

namespace {

// The address bytes of an IP literal, optionally followed by "/prefix"; nullopt otherwise.
std::optional<std::pair<int, std::array<unsigned char, 16>>> ipBytes(const std::string& text) {
  std::string ip = text.substr(0, text.find('/'));
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  std::array<unsigned char, 16> buf{};
  if (inet_pton(AF_INET, ip.c_str(), buf.data()) == 1) return std::make_pair(AF_INET, buf);
  if (inet_pton(AF_INET6, ip.c_str(), buf.data()) == 1) {
    // An IPv4-mapped IPv6 address is the IPv4 address.
    static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(buf.data(), kMapped, 12) == 0) {
      std::array<unsigned char, 16> v4{};
      std::memcpy(v4.data(), buf.data() + 12, 4);
      return std::make_pair(AF_INET, v4);
    }
    return std::make_pair(AF_INET6, buf);
  }
  return std::nullopt;
}

bool isLoopback(const std::pair<int, std::array<unsigned char, 16>>& ip) {
  static constexpr std::array<unsigned char, 16> kLoop6 = {0, 0, 0, 0, 0, 0, 0, 0,
                                                           0, 0, 0, 0, 0, 0, 0, 1};
  return ip.first == AF_INET ? ip.second[0] == 127 : ip.second == kLoop6;
}

}  // namespace

std::optional<std::string> controllerAddressOf(const std::vector<std::string>& host_addresses,
                                               const std::vector<v1::Endpoint>& endpoints) {
  for (const auto& ep : endpoints) {
    auto e = ipBytes(ep.ip());
    if (!e || isLoopback(*e)) continue;
    for (const auto& a : host_addresses) {
      auto h = ipBytes(a);
      if (h && *h == *e) return ep.ip();
    }
  }
  return std::nullopt;
}

namespace {
void setEndpoints(v1::DesiredState& s, const std::vector<v1::Endpoint>& endpoints) {
  s.clear_controller_endpoints();
  for (const auto& e : endpoints) *s.add_controller_endpoints() = e;
}
}  // namespace

v1::DesiredState isolatedState(const v1::DesiredState& current, const IsolationSpec& spec,
                               const std::vector<v1::Endpoint>& endpoints) {
  v1::DesiredState next = current;
  next.set_generation(current.generation() + 1);
  v1::Isolation* iso = next.mutable_isolation();
  iso->Clear();
  iso->set_enabled(true);
  for (const auto& n : spec.set_names) iso->add_exemption_sets(n);
  for (const auto& r : spec.rules) *iso->add_exemptions() = r;
  iso->set_expires_at_unix_ms(spec.expires_at_unix_ms);
  iso->set_reason(spec.reason);
  iso->set_requested_by(spec.requested_by);
  setEndpoints(next, endpoints);
  return next;
}

v1::DesiredState releasedState(const v1::DesiredState& current, const std::string& reason,
                               const std::string& requested_by,
                               const std::vector<v1::Endpoint>& endpoints) {
  v1::DesiredState next = current;
  next.set_generation(current.generation() + 1);
  v1::Isolation* iso = next.mutable_isolation();
  iso->Clear();
  iso->set_enabled(false);
  iso->set_reason(reason);
  iso->set_requested_by(requested_by);
  setEndpoints(next, endpoints);
  return next;
}

bool isolationExpired(const v1::DesiredState& state, int64_t now_unix_ms) {
  const auto& iso = state.isolation();
  return iso.enabled() && iso.expires_at_unix_ms() > 0 && iso.expires_at_unix_ms() <= now_unix_ms;
}

std::optional<uint64_t> acceptedGeneration(uint64_t claimed, uint64_t issued) {
  if (claimed > issued) return std::nullopt;
  return claimed;
}

AckResult ackFromReport(const v1::StateReport& report, uint64_t generation) {
  if (report.ok() && report.enforced_generation() >= generation) return AckResult::kEnforced;
  if (!report.ok() && report.generation() >= generation) return AckResult::kFailed;
  return AckResult::kNone;
}

AckResult ackFromEnforced(uint64_t enforced_generation, uint64_t generation) {
  return enforced_generation >= generation ? AckResult::kEnforced : AckResult::kNone;
}

}  // namespace bulkhead::controller
