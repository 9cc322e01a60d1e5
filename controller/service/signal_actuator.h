// Carries out what playbooks decided with the service layer's own operations, exactly as an
// operator's request would be: Containment (block, unblock, isolate, release), HostOperations
// (kill-connections, kill-sessions) and EvidenceService (capture). Each is checked, audited and
// enforced by that operation; the caller is the playbook.
#pragma once

#include "controller/service/containment.h"
#include "controller/service/evidence_service.h"
#include "controller/service/host_operations.h"
#include "controller/service/signals.h"

namespace bulkhead::controller {

class ServiceActuator final : public SignalActuator {
 public:
  ServiceActuator(Containment& containment, HostOperations& operations,
                  EvidenceService& evidence)
      : containment_(containment), operations_(operations), evidence_(evidence) {}

  // One request per address (blocks, unblocks) or per host (connection and session kills,
  // captures); `done` gets the first error, else a summary ("3 enforced, 1 pending").
  // capture-then-isolate isolates once the capture ended, whatever its outcome.
  void start(const Caller& caller, const PlannedAction& action, const std::string& reason,
             std::function<void(const absl::Status&, const std::string&)> done) override;

 private:
  Containment& containment_;
  HostOperations& operations_;
  EvidenceService& evidence_;
};

}  // namespace bulkhead::controller
