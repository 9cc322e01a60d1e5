// Pure block decisions for the controller: the match an operator asked for, the guardrails
// (loopback, the controller's own addresses, protected CIDRs, too-wide prefixes), the next
// desired state with a block added or removed, and which fleet-wide blocks a host still
// lacks. No I/O, no clocks: time is passed in.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/containment.pb.h"
#include "common/parse.h"

namespace bulkhead::controller {

// The desired_state row holding the fleet-wide blocks of tenant "default" (not a host: ids never
// contain '@'); another tenant's are under fleetStateKey(tenant).
inline constexpr char kFleetStateKey[] = "@fleet";
// kFleetStateKey for "default", "@fleet:" and the name for another tenant.
std::string fleetStateKey(std::string_view tenant);
// The tenant whose fleet-wide blocks `key` holds; nullopt when it is a host's.
std::optional<std::string> tenantOfFleetStateKey(std::string_view key);

// One CIDR that can never be blocked (policies/guardrails/protected.yaml).
struct ProtectedCidr {
  Cidr cidr;
  std::string why;
  int line = 0;
};

// Parses the protected-CIDR file:
//   protected:
//     - cidr: 10.77.0.40/32
//       why: responders' jump host
// Errors name FILE:LINE and the field (a missing or bad cidr, an unknown field).
absl::StatusOr<std::vector<ProtectedCidr>> parseProtectedCidrs(std::string_view file_name,
                                                               std::string_view yaml);

struct BlockGuardrails {
  std::vector<std::string> controller_ips;        // IP literals agents dial
  std::vector<ProtectedCidr> protected_cidrs;
  // A block whose prefix is shorter (wider) than these needs `yes`: by default a v4 block
  // wider than a /16 or a v6 block wider than a /48.
  int confirm_prefix_v4 = 16;
  int confirm_prefix_v6 = 48;
};

// What a block matches (also the key of unblock): a canonical CIDR, protocol any/tcp/udp, one
// port or any (0), direction IN/OUT/BOTH (unspecified = BOTH).
struct BlockMatch {
  Cidr cidr;
  bulkhead::v1::Protocol protocol = bulkhead::v1::PROTOCOL_ANY;
  uint32_t port = 0;
  bulkhead::v1::Direction direction = bulkhead::v1::DIRECTION_BOTH;
  std::string describe() const;   // "10.77.0.66/32 tcp port 22 in"
};

// Validates the request's fields. Errors (INVALID_ARGUMENT) name the field and the value:
// remote_cidr, port (> 65535), protocol (icmp or unknown), direction. Protocol UNSPECIFIED
// (a block stored or sent in that form) is ANY; operator requests refuse it before this.
absl::StatusOr<BlockMatch> parseBlockMatch(const std::string& remote_cidr,
                                           bulkhead::v1::Protocol protocol, uint32_t port,
                                           bulkhead::v1::Direction direction);

// Refuses (FAILED_PRECONDITION, naming what it would cut off) a block that overlaps loopback
// (127.0.0.0/8, ::1, IPv4-mapped loopback), a controller address, or a protected CIDR; and a
// prefix wider than the confirm limit unless `yes`.
absl::Status checkBlockGuardrails(const BlockMatch& match, const BlockGuardrails& guardrails,
                                  bool yes);

bool sameMatch(const bulkhead::v1::Block& block, const BlockMatch& match);

bulkhead::v1::Block makeBlock(const BlockMatch& match, const std::string& id,
                              int64_t expires_at_unix_ms, const std::string& reason,
                              const std::string& requested_by, int64_t created_at_unix_ms);

// `current` with `block` added (replacing a block with the same match: a new TTL or reason),
// blocks expired by `now` dropped, the controller endpoints set, and generation + 1.
bulkhead::v1::DesiredState withBlock(const bulkhead::v1::DesiredState& current,
                                     const bulkhead::v1::Block& block, int64_t now_unix_ms,
                                     const std::vector<bulkhead::v1::Endpoint>& endpoints);

// `current` without the blocks of `match` (and without expired ones), generation + 1; nullopt
// when no block in force has that match.
std::optional<bulkhead::v1::DesiredState> withoutBlock(
    const bulkhead::v1::DesiredState& current, const BlockMatch& match, int64_t now_unix_ms,
    const std::vector<bulkhead::v1::Endpoint>& endpoints);

// Protocol in a DesiredState: UNSPECIFIED means ANY (states stored by earlier versions, and
// the agent wire form below).
// Rewrites UNSPECIFIED to ANY in the blocks and exemption rules: the controller's own form.
void readUnsetProtocolsAsAny(bulkhead::v1::DesiredState& state);
// `state` as sent to agents: ANY written as UNSPECIFIED, which agents of every version read
// as any (an agent one version behind refuses the value ANY as unknown).
bulkhead::v1::DesiredState agentWireState(const bulkhead::v1::DesiredState& state);

// The fleet-wide blocks in force at `now` that `state` lacks (by id).
std::vector<bulkhead::v1::Block> missingFleetBlocks(const bulkhead::v1::DesiredState& state,
                                                    const std::vector<bulkhead::v1::Block>& fleet,
                                                    int64_t now_unix_ms);

}  // namespace bulkhead::controller
