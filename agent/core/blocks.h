// Blocks of the desired state -> elements of nftables sets with kernel timeouts, the rules
// that drop on them, incremental add/delete batches, and the matching flow decision. Pure: no
// syscalls, no clock (callers pass `now`).
//
// Layout. Every block lands in sets named blk<F>_<dir>_<kind>_<L>:
//   F     4 | 6
//   dir   in  (packets FROM the remote: input saddr, forward saddr; port = destination port)
//         out (packets TO the remote: output daddr, forward daddr; port = destination port)
//         (direction BOTH, or unspecified, puts the block in both)
//   kind  addr  (any protocol, any port)       key: address
//         proto (one protocol, any port)       key: address . inet_proto
//         port  (tcp/udp, one port)            key: address . inet_proto . inet_service
//   L     prefix length; the rule masks the packet address to L bits (`ip saddr & MASK`), so
//         the sets are plain hash sets with per-element timeouts.
// One set per prefix length is how overlapping prefixes stay correct: the kernel never
// merges a /16 into a /8 (the interval-set auto-merge pitfall loses the /16's expiry), each
// element keeps its own timeout. Identical elements from several blocks are merged with the
// latest expiry (permanent wins).
// Protocol "any" (ANY, or UNSPECIFIED: see containment.proto) with a port means tcp and udp on
// that port. A block matches one port or any
// (PortRange first == last, or 0-0).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/core/flow.h"
#include "bulkhead/v1/containment.pb.h"

namespace bulkhead::agent {

// set name -> element key text (e.g. "10.77.0.66 . 6 . 22": protocols by number) -> absolute expiry
// (unix ms, 0 = permanent). Only blocks still in force at `now` are present.
using BlockElements = std::map<std::string, std::map<std::string, int64_t>>;

// Checks every block: remote_cidr parses (v4 or v6), direction is unspecified/IN/OUT/BOTH,
// protocol ANY/TCP/UDP, ports 0-0 or one port 1..65535 (first == last). Names the field.
absl::Status validateBlocks(const bulkhead::v1::DesiredState& state);

// True when the block is in force at `now` (no expiry, or expiry later than now).
bool blockActive(const bulkhead::v1::Block& block, int64_t now_unix_ms);

// The set elements of the blocks in force at `now`. Invalid blocks are left out.
BlockElements blockElements(const bulkhead::v1::DesiredState& state, int64_t now_unix_ms);

// Set declarations (with elements and their remaining timeouts at `now`) for the table body,
// one statement per line, indented like the renderer's.
std::string renderBlockSets(const BlockElements& elements, int64_t now_unix_ms);

// The drop rules of `chain` ("input", "output" or "forward") for the sets in `elements`.
std::string renderBlockRules(const BlockElements& elements, const std::string& chain);

// Incremental batch from `before` (what is in the kernel, computed earlier) to `after` (at
// `now`): `delete element` for elements gone or whose expiry changed (unless they have expired
// by `now`: the kernel already dropped them), `add element ... timeout` for new or changed
// ones. nullopt when the set names differ (a table rebuild is needed). "" when nothing
// changes.
std::optional<std::string> blockUpdateBatch(const BlockElements& before, const BlockElements& after,
                                            int64_t now_unix_ms);

// True when `after` has an element (or an expiry) that `before` lacks: new blocks, so
// established matching flows must be cut.
bool blocksAdded(const BlockElements& before, const BlockElements& after);

// The smallest expiry later than `now` among `elements`, 0 if none.
int64_t nextBlockExpiry(const BlockElements& elements, int64_t now_unix_ms);

// Whether a live flow would be dropped by the blocks in force (compiled once per cut).
// Local flows: direction in matches remote in CIDR and (any port or local port == port);
// out matches remote in CIDR and (any port or remote port == port). Forwarded flows
// (local_* = initiator) are judged on both packet directions, as the forward chain does.
class BlockMatcher {
 public:
  BlockMatcher(const bulkhead::v1::DesiredState& state, int64_t now_unix_ms);
  ~BlockMatcher();
  BlockMatcher(BlockMatcher&&) noexcept;
  BlockMatcher& operator=(BlockMatcher&&) noexcept;
  bool empty() const;
  bool blocked(const Flow& flow) const;

 private:
  struct Compiled;
  std::unique_ptr<const Compiled> compiled_;
};

}  // namespace bulkhead::agent
