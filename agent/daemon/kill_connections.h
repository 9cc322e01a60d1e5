// The kill-connections command: cuts the live flows to/from a remote CIDR (optionally one
// port, local or remote) without blocking anything, and lists each connection cut.
#pragma once

#include "agent/linux/flow_killer.h"
#include "bulkhead/v1/agent.pb.h"

namespace bulkhead::agent {

// Answers `command` (which has kill_connections) with `killer`: sockets destroyed and
// conntrack entries deleted whose remote address (either end, for forwarded flows) is in
// remote_cidr and, when ports are given, whose local or remote port is in the range.
// result_json: {"connections_cut": N, "connections": [{"proto", "local", "local_port",
// "remote", "remote_port", "pid", "forwarded", "how"}], "errors": [...]}. A bad CIDR or port
// range: ok=false, refused=true, nothing cut.
bulkhead::v1::CommandResult killConnections(FlowKiller& killer,
                                            const bulkhead::v1::Command& command);

}  // namespace bulkhead::agent
