// What the service layer needs of the fleet of hosts: their targets and desired states, and a
// way to push new states and wait for the agents' answers. rpc/'s Fleet (the agent streams)
// implements it; service-level tests use a fake.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bulkhead/v1/agent.pb.h"
#include "bulkhead/v1/operator.pb.h"
#include "controller/core/containment.h"

namespace bulkhead::controller {

// What an isolate, release, block or unblock came to: one outcome per host (the agent's
// answer, or why there is none yet) and what the operator should know that did not stop it.
struct ContainmentResult {
  std::vector<bulkhead::v1::HostOutcome> outcomes;
  std::vector<std::string> warnings;
};

// Receives a containment call's result, exactly once: `status` OK with the result, or the
// refusal (then `result` is empty).
using ContainmentDone = std::function<void(const absl::Status& status, ContainmentResult result)>;

// One Isolate/Release/Block/Unblock (or dry run) waiting for its hosts' answers.
// `result.outcomes` and `waiting` are guarded by the fleet's lock until the fleet settles the
// op (done); after that only the thread that settled it touches the op, and it calls `done`.
struct PendingOp {
  uint64_t id = 0;
  bool dry_run = false;
  ContainmentResult result;
  ContainmentDone done;  // called once, after settling
  std::string operator_name;
  std::string tenant;  // of the op's audit rows (AuditEntry::tenant)
  std::string incident;  // of the op's audit rows (AuditEntry::incident)
  std::string action;  // "isolate" | "release" | "block" | "unblock"
  std::string target;
  std::string reason;
  std::map<std::string, std::string> host_tenants;  // host → tenant, named in its outcome
  std::chrono::milliseconds wait{5000};
  size_t waiting = 0;  // outcomes still open
  bool settled = false;
};

class FleetControl {
 public:
  virtual ~FleetControl() = default;

  // Called (under the fleet's lock) when an op's last outcome is answered; must not block.
  virtual void setOpReadyHandler(std::function<void(std::shared_ptr<PendingOp>)> handler) = 0;
  // Every known host with its labels, addresses and whether it is online.
  virtual std::map<std::string, TargetHost> targets() = 0;
  // The desired states of `hosts` (an empty state, generation 0, for hosts without one). Their
  // generations are the controller's own; nothing an agent reports raises them.
  virtual std::map<std::string, bulkhead::v1::DesiredState> desiredStates(
      const std::vector<std::string>& hosts) = 0;
  virtual std::map<std::string, bulkhead::v1::DesiredState> allDesiredStates() = 0;
  // Installs `states` (already persisted) and pushes each to its host if online. With an op,
  // adds one outcome per host in `order` (exemption sets from `sets`): PENDING "offline" for
  // hosts without a stream, open (waiting for the acknowledgement) for the others. Returns
  // true when nothing is left to wait for.
  virtual bool publish(const std::shared_ptr<PendingOp>& op, const std::vector<std::string>& order,
                       const std::map<std::string, bulkhead::v1::DesiredState>& states,
                       const std::map<std::string, std::vector<std::string>>& sets) = 0;
  // Dry run: sends each online host a PreviewState command for its would-be state and makes
  // `op` wait for the answers; offline hosts get FAILED outcomes. Changes no state. Returns
  // true when nothing is left to wait for.
  virtual bool preview(const std::shared_ptr<PendingOp>& op, const std::vector<std::string>& order,
                       const std::map<std::string, bulkhead::v1::DesiredState>& states,
                       const std::map<std::string, std::vector<std::string>>& sets) = 0;
  // Marks `op` settled, forgets its waiters and closes its open outcomes with `open_state` and
  // `open_error`. False if it was already settled.
  virtual bool settle(const std::shared_ptr<PendingOp>& op,
                      bulkhead::v1::HostOutcome::State open_state,
                      const std::string& open_error) = 0;
  // Reads the desired states of `hosts` from the store again (another controller on the
  // database changed them) and pushes each newer one to its host if its stream is here.
  virtual void reloadDesiredStates(const std::vector<std::string>& /*hosts*/) {}
  // `listener` is called (on any thread, no lock held) when another controller on the database
  // changed a tenant's fleet-wide blocks (fleetStateKey). Null to unset.
  virtual void setFleetBlocksListener(std::function<void()> listener) = 0;
  // Ops still waiting (for shutdown).
  virtual std::vector<std::shared_ptr<PendingOp>> pendingOps() = 0;

  // Whether `host` is known (online or not).
  virtual bool known(const std::string& host) = 0;
  // One-shot commands (sessions, processes, captures): queues `command` on `host`'s stream.
  // False with `why` when the host is unknown, offline or disconnecting. The answer comes to
  // the command listener.
  virtual bool sendCommand(const std::string& host, bulkhead::v1::Command command,
                           std::string* why) = 0;
  // Receives every CommandResult (with the host it came from), under the fleet's lock: it must
  // not block or call into the fleet. Null to unset.
  virtual void setCommandListener(
      std::function<void(const std::string&, const bulkhead::v1::CommandResult&)> listener) = 0;
};

}  // namespace bulkhead::controller
