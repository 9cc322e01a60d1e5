// The one door every signal goes through, whoever delivers it: an agent forwarding a local
// tool's report (controller/rpc/agent_stream), an operator or a script (`bulkhead signal`), a
// webhook integration, the CrowdSec poller. The implementation (signals.h) validates the
// signal, records it durably, deduplicates it by its idempotency key and lets the playbooks
// decide under the guardrails.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/signals.pb.h"

namespace bulkhead::controller {

// The audit actions of the rows SignalService writes besides the operator calls' own.
inline constexpr char kSignalActionAuditAction[] = "signal-action";
inline constexpr char kSignalRateCapAuditAction[] = "signal-rate-cap";
// A pending approval nobody decided before it expired (the controller's row; read as rejected).
inline constexpr char kApprovalExpiredAuditAction[] = "approval-expired";

// Who delivered a signal, as the front door established it (never from the signal itself).
struct SignalDelivery {
  // For the audit trail and `bulkhead signals`: "host:ID", "operator:NAME",
  // "integration:NAME" or "crowdsec".
  std::string delivered_by;
  // The host id from the agent's certificate when an agent forwarded the signal; the signal's
  // own `host` field is then replaced by it. Empty for every other front door.
  std::string reporting_host;
  // The tenant the signal belongs to when no agent reported it: the integration's, or the
  // operator's call's; empty: "default". (An agent's signal belongs to its host's tenant.)
  std::string tenant;
};

struct SignalOutcome {
  std::string signal_id;
  std::string tenant;  // the tenant it belongs to (whose playbooks decided)
  bulkhead::v1::SignalDisposition disposition = bulkhead::v1::SIGNAL_DISPOSITION_UNSPECIFIED;
  std::vector<bulkhead::v1::SignalAction> actions;
};

using SignalDone = std::function<void(absl::StatusOr<SignalOutcome>)>;

class SignalIntake {
 public:
  virtual ~SignalIntake() = default;
  // Takes `signal` over. `done` runs exactly once, possibly on another thread: with the
  // outcome once the signal is recorded and decided (actions started, not finished), or with
  // an error when it was refused (INVALID_ARGUMENT naming the field, UNAVAILABLE while
  // shutting down): then nothing was recorded.
  virtual void submit(SignalDelivery from, bulkhead::v1::Signal signal, SignalDone done) = 0;
};

}  // namespace bulkhead::controller
