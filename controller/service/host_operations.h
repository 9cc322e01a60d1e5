// Operator actions on one host's sessions, processes and connections: each is checked,
// audited (a write as "accepted" before anything is sent, then "<action>.result" with a summary
// of the agent's answer; a read once, after the answer), sent to the host's agent as one
// Command through HostActions, and answered with the agent's typed result.
//
// Each call checks the caller's role (controller/service/authorization.h), the request's fields
// (controller/core/validate.h) and what a request must say (a reason, exactly one match, a
// known host), in that order.
//
// Threading: `done` runs on HostActions' thread, or on the calling thread for a refusal.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bulkhead/v1/agent.pb.h"
#include "controller/core/clock.h"
#include "controller/core/requests.h"
#include "controller/service/audit.h"
#include "controller/service/authorization.h"
#include "controller/service/fleet_control.h"
#include "controller/service/host_actions.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// The agent's answer. ok=false with refused=true: nothing was done because the request is at
// fault (then the status is FAILED_PRECONDITION); refused=false: the action failed.
struct HostActionResult {
  std::string host_id;
  std::string tenant;  // the host's; "" when refused before the host was found
  bool ok = false;
  bool refused = false;
  std::string error;
  // What the agent did: the typed result of the action; monostate when it sent none (refused,
  // failed before acting, offline, timed out, or an older agent's document that did not read:
  // then ok=false and error says so).
  std::variant<std::monostate, bulkhead::v1::KillConnectionsResult,
               bulkhead::v1::ListSessionsResult, bulkhead::v1::KillProcessesResult>
      output;
};
using HostActionDone = std::function<void(const absl::Status& status, HostActionResult result)>;

class HostOperations {
 public:
  // `actions` (not owned) sends the commands and must outlive this.
  HostOperations(const Clock& clock, Store& store, FleetControl& fleet, HostActions& actions);

  // Each checks that `caller` may ask for it (authorization.h), every field of `req`
  // (controller/core/validate.h) and what the request must say; a refusal is audited and
  // handed to `done` at once, on the calling thread.
  void listSessions(const Caller& caller, const ListSessionsRequest& req, HostActionDone done);
  void killSessions(const Caller& caller, const KillSessionsRequest& req, HostActionDone done);
  void killProcess(const Caller& caller, const KillProcessRequest& req, HostActionDone done);
  void killConnections(const Caller& caller, const KillConnectionsRequest& req,
                       HostActionDone done);

 private:
  // Sends `command` to `host` and hands the agent's answer to `done`; `actor` is the host's
  // (auditActorOn), so the result names the host's tenant. A write action
  // (`accepted_detail` non-empty) is first audited as accepted and its answer as
  // "<action>.result"; a read gets one row, after the answer, as `action`. Either way the
  // answer's row carries a summary of the result.
  // A capture-first kill (`capture_id` non-empty) waits `wait_ms` or 5 minutes, uncapped (its
  // capture, kill and upload), and ends its capture record "failed" or "timeout" unless the
  // agent reports the bundle stored.
  void run(const AuditActor& actor, OperatorAction action, const std::string& host,
           const std::string& reason, bulkhead::v1::Command command, uint32_t wait_ms,
           HostActionDone done, const std::string& accepted_detail = "",
           const std::string& capture_id = "");
  // Capture first: records the capture the kill takes (so its upload is accepted and kept with
  // chain of custody like any capture's, and with the actor's incident), fills `state` and
  // names `command` after it. Returns the capture id.
  absl::StatusOr<std::string> recordCaptureFirst(const AuditActor& actor, const std::string& host,
                                                 const std::string& reason,
                                                 bulkhead::v1::CaptureState* state,
                                                 bulkhead::v1::Command& command);
  // Sets a capture-first capture's final state (no-op for an empty id).
  void failCapture(const std::string& capture_id, const std::string& state);
  // authorize(caller, action), then validateRequest(req): the first refusal.
  template <typename Request>
  absl::Status admitted(const Caller& caller, OperatorAction action, const Request& req);
  // When `host` is known and `caller` holds `action`'s role on it (tenancy.h): the caller as
  // the host's audit rows name it, in the host's tenant. A host out of reach is answered as
  // unknown.
  std::optional<AuditActor> reaches(const Caller& caller, OperatorAction action,
                                    const std::string& host);
  // Audits a refusal of `action` and hands it to `done`.
  void refuse(const AuditActor& actor, OperatorAction action, const std::string& host,
              const std::string& reason, const absl::Status& status, HostActionDone& done,
              const std::string& detail = "");

  const Clock& clock_;
  Store& store_;
  FleetControl& fleet_;
  HostActions& actions_;
};

}  // namespace bulkhead::controller
