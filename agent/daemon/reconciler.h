// The reconcile loop's decisions and side effects, one step at a time: desired state ->
// persisted copy -> rendered ruleset -> kernel (apply = one atomic commit, read back, hash)
// -> cut flows -> StateReport. Two steps overlap others on short-lived threads of their own,
// and every report waits for them: the persisted copy is written while the state is enforced,
// and flows are cut (once the new table is committed) while the table is read back. The
// kernel and the clock come in through the constructor (NftablesFirewall and
// SockDiagFlowKiller in the daemon, fakes in unit tests).
//
// Thread-safety: none. The daemon drives one Reconciler from one thread (the nft context it
// uses must stay on one thread; only the FlowKiller is called from another, one call at a
// time).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/core/blocks.h"
#include "agent/linux/firewall.h"
#include "agent/linux/flow_killer.h"
#include "bulkhead/v1/agent.pb.h"
#include "bulkhead/v1/containment.pb.h"

namespace bulkhead::agent {

struct ReconcilerOptions {
  std::filesystem::path state_dir;
  // The controller endpoints this agent dials (pinned IPs, port). Always merged into the
  // state's controller_endpoints before rendering, so the channel in use is never cut away,
  // whatever the controller advertises.
  std::vector<bulkhead::v1::Endpoint> pinned_controller;
  // From the netns guard: if not OK, nothing touches the kernel and every apply reports this.
  absl::Status enforcement_allowed = absl::OkStatus();
};

// What is in force, for status, Hello and heartbeats.
struct EnforcedState {
  uint64_t desired_generation = 0;      // newest generation accepted (persisted)
  uint64_t enforced_generation = 0;     // generation whose ruleset is in the kernel
  std::string ruleset_hash;             // SHA-256 of the read-back table; "" = no table
  bool table_expected = false;          // our table should exist
  bool isolated = false;                // isolation in force (not expired)
  int64_t isolation_expires_at_unix_ms = 0;
  std::vector<std::string> exemption_sets;
  size_t blocks = 0;
  bool fail_closed = false;             // controller-only isolation after an unreadable state
};

class Reconciler {
 public:
  using NowFn = std::function<int64_t()>;   // wall clock, unix ms

  Reconciler(ReconcilerOptions options, Firewall* firewall, FlowKiller* killer, NowFn now);

  // Start-up (daemon and --restore): enforces the persisted state. No persisted state: nothing
  // is touched (nullopt). An unreadable state file: fails closed with a controller-only
  // isolation (from the pinned endpoints, or those last seen) and says so in the report.
  std::optional<bulkhead::v1::StateReport> restore();

  // A desired state from the controller. Older generations than the one persisted are refused
  // (report names both); the same generation is re-verified and re-applied.
  bulkhead::v1::StateReport apply(const bulkhead::v1::DesiredState& desired);

  // The controller endpoints were (re-)pinned: while isolated, re-renders so the new ones are
  // kept. nullopt if nothing had to change.
  std::optional<bulkhead::v1::StateReport> setPinnedController(
      std::vector<bulkhead::v1::Endpoint> endpoints);

  // TTL: when the isolation in force has expired by now, re-renders (releasing it locally,
  // even offline) and returns the report. nullopt if nothing changed.
  std::optional<bulkhead::v1::StateReport> tick();

  // Unix ms of the next tick() that can change something (isolation expiry), 0 if none.
  int64_t nextDeadline() const;

  // After a netfilter event or on the backstop: reads the table back; if it differs from what
  // was applied (deleted, flushed, edited), re-applies and returns the tamper event.
  // `what` describes the trigger (message kinds, actors).
  std::optional<bulkhead::v1::TamperEvent> recheck(const std::string& what);

  // Dry run: render, kernel check (nft -c), list flows that would be cut and kept. Changes
  // nothing: no persist, no apply, no cut.
  bulkhead::v1::CommandResult preview(const std::string& command_id,
                                      const bulkhead::v1::DesiredState& desired);

  const EnforcedState& state() const { return state_; }

 private:
  // Renders and enforces `state` (merged with the pinned endpoints); fills report steps.
  // With `incremental`, a change of blocks only is applied as element add/delete batches.
  bulkhead::v1::StateReport enforce(const bulkhead::v1::DesiredState& state, bool fail_closed,
                                    bool incremental = true);
  // enforce() without the report's duration_us.
  bulkhead::v1::StateReport enforceSteps(const bulkhead::v1::DesiredState& state, bool fail_closed,
                                         bool incremental);
  bulkhead::v1::DesiredState withPinnedController(const bulkhead::v1::DesiredState& s) const;
  void noteDesired(const bulkhead::v1::DesiredState& s);

  // Blocks whose kernel timeout has run out since the last enforcement: forgets them and
  // re-reads the table's hash (the kernel removed the elements itself; not a tamper).
  void noteExpiredBlocks(int64_t now);

  ReconcilerOptions options_;
  Firewall* firewall_;
  FlowKiller* killer_;
  NowFn now_;
  std::optional<bulkhead::v1::DesiredState> desired_;   // persisted / in force
  EnforcedState state_;
  // What the kernel holds, for incremental block updates: the block set elements and the
  // rendered ruleset without them (a rebuild is needed when the latter changes).
  BlockElements kernel_blocks_;                   // valid when state_.table_expected
  std::string kernel_base_;                       // renderRuleset() of the state without blocks
  int64_t last_block_expiry_ms_ = 0;              // latest expiry noteExpiredBlocks() forgot
  static constexpr int64_t kBlockExpirySlackMs = 200;
};

// Flow -> FlowRecord (IPs as text, description).
bulkhead::v1::FlowRecord toFlowRecord(const Flow& flow);

}  // namespace bulkhead::agent
