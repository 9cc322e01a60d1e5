// The kill-connections command: cuts the live flows to/from a remote CIDR (optionally one
// port, local or remote) without blocking anything, and lists each connection cut.
#pragma once

#include "agent/linux/flow_killer.h"
#include "bulkhead/v1/agent.pb.h"

namespace bulkhead::agent {

// Answers `command` (which has kill_connections) with `killer`: sockets destroyed and
// conntrack entries deleted whose remote address (either end, for forwarded flows) is in
// remote_cidr and, when ports are given, whose local or remote port is in the range.
// The answer's kill_connections lists each connection cut and what failed (errors: ok=false).
// A bad CIDR or port range: ok=false, refused=true, nothing cut.
bulkhead::v1::CommandResult killConnections(FlowKiller& killer,
                                            const bulkhead::v1::Command& command);

}  // namespace bulkhead::agent
