// Host name resolution through getaddrinfo(3): the one resolver of the controller (exemption
// sets, common/policy.h) and the agent (controller pinning, agent/daemon/controller_pin.h).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bulkhead {

// The IPv4 and IPv6 literals `host` resolves to (getaddrinfo with AF_UNSPEC, SOCK_STREAM:
// the system's resolver configuration), in resolver order, duplicates removed. NotFound,
// naming `host`, when it does not resolve or has no IP address. May block for as long as the
// resolver does; thread-safe.
absl::StatusOr<std::vector<std::string>> resolveHost(const std::string& host);

}  // namespace bulkhead
