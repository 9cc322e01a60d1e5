// Desired containment state -> nftables ruleset text for `table inet bulkhead`, and the
// matching per-flow decision (which live flows the ruleset keeps). Pure: no syscalls, no
// clock (callers pass `now`), no I/O.
//
// Table layout (stable whatever the state; sets may be empty):
//   sets   ctrl4/6        controller ip . tcp port             always accepted (both ways)
//          protected4/6   protected CIDRs                      always accepted (all chains)
//          block4/6       reserved, always empty (kept so the layout stays stable)
//          blk<F>_<dir>_<kind>_<L>  blocks, one hash set per prefix length with per-element
//                         kernel timeouts (agent/core/blocks.h); only those in use
//          exempt_in4/6   remote . l4proto . LOCAL port        kept while isolated
//          exempt_out4/6  remote . l4proto . REMOTE port       kept while isolated
//          exempt_icmp4/6 remote CIDRs with icmp/any rules     ICMP kept while isolated
//   chains input, output, forward: hook priority -310, stateless rules; policy drop while
//          isolated, accept otherwise. Order: loopback, controller, protected, (output: TCP
//          RST), blocks, then (isolated only) exemptions, DHCP, IPv6 ND/MLD, PMTU ICMP.
// Protocol "any" (ANY, or UNSPECIFIED: see containment.proto) in an exemption means tcp + udp (on its ports) + icmp (to/from the remote);
// other IP protocols are not kept.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "agent/core/flow.h"
#include "bulkhead/v1/containment.pb.h"

namespace bulkhead::agent {

// Checks what renderRuleset() needs to render `state` faithfully: controller endpoints are
// IP literals with ports 1..65535, exemption and protected CIDRs parse, exemption directions
// are IN/OUT/BOTH, port ranges are first <= last <= 65535 (0-0 = any), and an isolation
// (active at `now_unix_ms` or not) has at least one controller endpoint, so it can never cut
// the controller channel away. The error names the field and the value at fault.
absl::Status validateDesiredState(const bulkhead::v1::DesiredState& state);

// True when isolation is enabled and not expired: expires_at_unix_ms is 0 (until released) or
// later than `now_unix_ms`.
bool isolationActive(const bulkhead::v1::DesiredState& state, int64_t now_unix_ms);

// One nft batch (text, one statement per line) that atomically replaces our table:
//   add table inet bulkhead / delete table inet bulkhead / table inet bulkhead { ... }
// Deterministic: the same (state, isolation active at now) gives the same text; set elements
// are sorted, deduplicated, and normalised so no two elements of an interval set overlap.
// Entries that validateDesiredState() would reject are left out (never widened), so validate
// first.
std::string renderRuleset(const bulkhead::v1::DesiredState& state, int64_t now_unix_ms);

// Whether `flow` survives `state` at `now_unix_ms`, mirroring renderRuleset(): when isolation
// is active, loopback flows (loopback addresses, or local == remote), the controller channel
// (tcp to a controller endpoint), protected CIDRs, exempt flows (IN: remote in CIDR and local
// port in range; OUT: remote in CIDR and remote port in range; protocol and family match;
// ICMP for icmp/any rules) and DHCP client flows are kept, everything else (including all
// forwarded flows not touching a protected CIDR) is cut. When isolation is not active every
// flow is kept. Blocks are judged apart (BlockMatcher, agent/core/blocks.h): a block wins. IPv4-mapped IPv6 addresses count as IPv4.
bool flowKept(const Flow& flow, const bulkhead::v1::DesiredState& state, int64_t now_unix_ms);

// The same decision compiled once for judging many flows (a cut of 10,000 flows): build it
// with isolationActive(state, now) and call kept() per flow. Immutable, so thread-safe.
class FlowFilter {
 public:
  FlowFilter(const bulkhead::v1::DesiredState& state, bool isolation_active);
  ~FlowFilter();
  FlowFilter(FlowFilter&&) noexcept;
  FlowFilter& operator=(FlowFilter&&) noexcept;
  bool kept(const Flow& flow) const;

 private:
  struct Compiled;
  std::unique_ptr<const Compiled> compiled_;
};

// As above with expiry ignored (isolation.enabled decides). For callers that have already
// decided the isolation is in force.
bool flowKept(const Flow& flow, const bulkhead::v1::DesiredState& state);

}  // namespace bulkhead::agent
