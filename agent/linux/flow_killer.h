// Cuts established flows: local sockets with SOCK_DESTROY, others by deleting conntrack
// entries. Implemented in agent/linux; faked in unit tests.
#pragma once

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/core/flow.h"

namespace bulkhead::agent {

struct CutReport {
  std::vector<Flow> sockets_destroyed;   // local sockets aborted (peer got a RST)
  std::vector<Flow> conntrack_deleted;   // conntrack entries removed
  std::vector<std::string> errors;       // per-flow failures, the cut went on
  // Flows the selector kept (for --dry-run "kept" listings and counts). With dry_run the two
  // vectors above list what WOULD be cut.
  std::vector<Flow> sockets_kept;
  std::vector<Flow> conntrack_kept;
};

// Returns true for flows that must be cut.
using FlowSelector = std::function<bool(const Flow&)>;

class FlowKiller {
 public:
  virtual ~FlowKiller() = default;
  // Enumerates live flows (TCP sockets in every state but LISTEN and TIME_WAIT, v4 and v6;
  // conntrack entries) and cuts those the selector picks. `dry_run` only reports.
  virtual absl::StatusOr<CutReport> cut(const FlowSelector& selector, bool dry_run) = 0;
};

}  // namespace bulkhead::agent
