// The decision for one signal: which playbooks match, what each plans, and what the guardrails
// let through. Pure: the fleet is seen through FleetView, time is passed in; the only state is
// the rate caps' windows (so one engine serves one thread, or its owner locks).
//
// Guardrails (applied to every source, whatever the tool's own allowlist says):
//  - protected addresses: a block or connection kill of an address inside (or a CIDR around)
//    loopback, a controller address, a protected CIDR (policies/guardrails/protected.yaml)
//    or an address of a protected host is suppressed;
//  - protected hosts (selectors): never isolated, captured or killed by a playbook;
//  - rate caps: per playbook (its rate_per_minute) and global (actions per minute); the rest
//    is suppressed and counted; the first suppression of a burst is flagged for notification;
//  - blast radius: an action touching more than `blast_radius` hosts, or an isolation of a
//    host matching an `approval_for_isolate` selector, waits for approval;
//  - simulation: a playbook with `simulate: true` plans and records, never acts.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bulkhead/v1/signals.pb.h"
#include "common/parse.h"
#include "controller/core/blocks.h"
#include "controller/playbook/playbook.h"

namespace bulkhead::controller {

struct FleetHost {
  std::string id;
  Labels labels;
  std::vector<std::string> addresses;  // IP literals the host was last seen with
};

// What the engine may know of the fleet (the controller's registry behind it).
class FleetView {
 public:
  virtual ~FleetView() = default;
  // The host with this id (or name); nullopt when unknown.
  virtual std::optional<FleetHost> host(const std::string& id_or_name) const = 0;
  // Every known host, by id.
  virtual std::vector<FleetHost> hosts() const = 0;
};

struct AutomationGuardrails {
  BlockGuardrails blocks;                    // controller addresses, protected CIDRs, prefix limits
  std::vector<Labels> protected_hosts;       // never acted on; their addresses never blocked
  uint32_t rate_per_minute = 120;            // automatic actions per minute, all playbooks
  uint32_t blast_radius = 10;                // more hosts than this: approval
  std::vector<Labels> approval_for_isolate;  // isolating a matching host: approval
  // Not for automation: a person's action that changes containment or collects evidence
  // (isolate, release, block, unblock, kill-*, capture) must name an open incident
  // (`--incident ID`); authorization.h refuses it otherwise.
  bool require_incident = false;
};

// Parses POLICY_DIR/guardrails/automation.yaml (schema: controller/playbook/README.md).
// Errors "FILE:LINE: field: problem". Leaves `blocks` alone (protected.yaml and the controller
// addresses fill it).
absl::StatusOr<AutomationGuardrails> parseAutomationGuardrails(std::string_view file_name,
                                                               std::string_view yaml,
                                                               AutomationGuardrails defaults);

enum class Verdict {
  kStart,          // let through: the controller starts it
  kSimulated,      // its playbook simulates: recorded, not done
  kSuppressed,     // stopped by a guardrail (`why` names it)
  kNeedsApproval,  // waits for a responder (`why` says which guardrail asked)
  kSkipped,        // nothing to act on (no address, no affected host, unknown host)
};
std::string_view verdictName(Verdict verdict);

// One action planned for a signal.
struct PlannedAction {
  std::string playbook;
  ActionKind kind = ActionKind::kBlock;
  bool fleet_wide = false;           // blocks and connection kills with scope fleet
  std::vector<std::string> hosts;    // the host ids it touches otherwise (and for counting)
  std::vector<Cidr> addresses;       // blocks, connection and session kills
  std::chrono::milliseconds ttl{0};  // blocks and isolations; 0: none
  std::vector<std::string> exempt_sets;
  Verdict verdict = Verdict::kStart;
  std::string why;  // for kSuppressed, kNeedsApproval and kSkipped

  std::string target() const;  // "all", or the host ids joined by commas
  std::string detail() const;  // "10.77.0.66/32 for 600 s", "exempt ir-jump-host for 3600 s"
};

struct Decision {
  std::vector<std::string> matched;  // playbook names, in evaluation order
  std::vector<PlannedAction> actions;
  bulkhead::v1::SignalDisposition disposition = bulkhead::v1::SIGNAL_DISPOSITION_NO_MATCH;
  // A rate cap started suppressing with this signal (one notification per burst).
  bool rate_cap_reached = false;
};

// Checks a signal's own fields (INVALID_ARGUMENT naming the field): a known source, at most 64
// addresses each a valid address or CIDR, a rule of at most 256 bytes, at most 64 labels.
absl::Status validateSignal(const bulkhead::v1::Signal& signal);

// The idempotency key the controller uses when the signal brings none: its source,
// integration, rule, sorted addresses, host and resolved, hashed.
std::string derivedIdempotencyKey(const bulkhead::v1::Signal& signal);

class PlaybookEngine {
 public:
  PlaybookEngine(PlaybookSet playbooks, AutomationGuardrails guardrails);

  // Decides what `signal` causes. `reporting_host` is the host id of the agent that delivered
  // it (empty for other front doors). `signal` must have passed validateSignal. Counts the
  // started actions against the rate caps at `now`.
  Decision decide(const bulkhead::v1::Signal& signal, const std::string& reporting_host,
                  const FleetView& fleet, std::chrono::steady_clock::time_point now);

  // The same, without counting against the rate caps (`bulkhead playbook test`).
  Decision preview(const bulkhead::v1::Signal& signal, const std::string& reporting_host,
                   const FleetView& fleet, std::chrono::steady_clock::time_point now) const;

  // The rate caps' windows, to put back with restoreRates() when what decide() started could
  // not happen after all (the signal was not recorded): a failed signal takes no room.
  struct Rates;
  Rates rates() const;
  void restoreRates(Rates rates);

  // Replaces playbooks and guardrails (a reload); the rate windows stay.
  void replace(PlaybookSet playbooks, AutomationGuardrails guardrails);

  const PlaybookSet& playbooks() const { return playbooks_; }
  const AutomationGuardrails& guardrails() const { return guardrails_; }

 private:
  // A sliding one-minute window of started actions.
  struct Window {
    std::deque<std::chrono::steady_clock::time_point> starts;
    bool suppressing = false;  // the last action it saw was suppressed
  };
  Decision evaluate(const bulkhead::v1::Signal& signal, const std::string& reporting_host,
                    const FleetView& fleet, std::chrono::steady_clock::time_point now, bool count);
  // True when one more action fits the window's `limit` at `now` (and takes it when `count`).
  static bool admit(Window& window, uint32_t limit, std::chrono::steady_clock::time_point now,
                    bool count);

  PlaybookSet playbooks_;
  AutomationGuardrails guardrails_;
  Window global_;
  std::map<std::string, Window> per_playbook_;

 public:
  struct Rates {
    Window global;
    std::map<std::string, Window> per_playbook;
  };
};

}  // namespace bulkhead::controller
