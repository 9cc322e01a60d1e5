// Pure containment decisions: which hosts an operator's request targets, the next desired
// state of a host (isolate, release, TTL expiry), which exemption sets apply, the guardrail
// against isolating the controller's own host, and how an agent's report answers a wait.
// No I/O, no clocks: time is passed in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/containment.pb.h"
#include "common/parse.h"
#include "common/policy.h"

namespace bulkhead::controller {

// What the controller knows of a host when resolving targets.
struct TargetHost {
  Labels labels;
  std::vector<std::string> addresses;   // CIDR notation, as the agent reported them
  bool online = false;
  std::string tenant = "default";  // the tenant it belongs to
};

struct TargetRequest {
  std::vector<std::string> hosts;   // explicit host ids
  std::string selector;             // or "k=v[,k=v]"
  bool yes = false;                 // confirms a selector matching more than `limit` hosts
};

// The host ids a request targets, in request order (hosts) or id order (selector), without
// duplicates. Errors: neither or both of hosts and selector (INVALID_ARGUMENT); an unknown
// host (NOT_FOUND "unknown host \"x\""); a bad selector (INVALID_ARGUMENT naming it); a
// selector matching nothing (NOT_FOUND); more than `limit` matches without `yes`
// (FAILED_PRECONDITION naming the count).
absl::StatusOr<std::vector<std::string>> resolveTargets(
    const std::map<std::string, TargetHost>& known, const TargetRequest& request,
    uint32_t limit);

// The exemption sets kept when isolating a host: the library's default sets for its labels
// (unless `no_defaults`) plus `requested`, by name. Unknown requested names are an error.
absl::StatusOr<std::vector<const ExemptionSet*>> exemptionSetsFor(
    const PolicyLibrary& library, const Labels& host_labels,
    const std::vector<std::string>& requested, bool no_defaults);

// The controller endpoint (IP literal) found among a host's addresses, if any: such a host may
// be the controller's own and is never isolated (its isolation alone fails; the other targets
// of the request proceed). `endpoints` are the controller's addresses from its configuration;
// loopback addresses never match (every host has them).
std::optional<std::string> controllerAddressOf(const std::vector<std::string>& host_addresses,
                                               const std::vector<bulkhead::v1::Endpoint>& endpoints);

// An enforced generation an agent reports, bound to the newest generation the controller
// issued for its host: the claim when it is at most `issued`, else nullopt. A claim above
// anything issued is ignored: it never answers a wait and never numbers the next change
// (the next generation is always the controller's stored one + 1).
std::optional<uint64_t> acceptedGeneration(uint64_t claimed, uint64_t issued);

struct IsolationSpec {
  std::vector<std::string> set_names;
  std::vector<bulkhead::v1::ExemptionRule> rules;   // resolved to IP literals
  int64_t expires_at_unix_ms = 0;                   // 0 = until released
  std::string reason;
  std::string requested_by;
};

// The next desired state: `current` with isolation on (replacing any earlier isolation's
// exemptions and expiry), the controller endpoints always set, and generation + 1. Blocks are
// kept.
bulkhead::v1::DesiredState isolatedState(const bulkhead::v1::DesiredState& current,
                                         const IsolationSpec& spec,
                                         const std::vector<bulkhead::v1::Endpoint>& endpoints);

// The next desired state with isolation off (reason and requester recorded), generation + 1.
bulkhead::v1::DesiredState releasedState(const bulkhead::v1::DesiredState& current,
                                         const std::string& reason,
                                         const std::string& requested_by,
                                         const std::vector<bulkhead::v1::Endpoint>& endpoints);

// True when `state` is isolated with an expiry at or before `now_unix_ms`.
bool isolationExpired(const bulkhead::v1::DesiredState& state, int64_t now_unix_ms);

// How an agent message answers a wait for `generation`.
enum class AckResult { kNone, kEnforced, kFailed };
// A state report: ENFORCED once enforced_generation reaches `generation` with ok; FAILED when
// the report is about `generation` (or a later one) and not ok; otherwise no answer yet.
AckResult ackFromReport(const bulkhead::v1::StateReport& report, uint64_t generation);
// A heartbeat or hello carrying the enforced generation.
AckResult ackFromEnforced(uint64_t enforced_generation, uint64_t generation);

}  // namespace bulkhead::controller
