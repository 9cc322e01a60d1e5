// Reads the host facts for Hello: hostname, interface addresses (getifaddrs), /etc/os-release,
// uname release. Missing pieces are left empty, never an error: Hello must still go out.
#pragma once

#include "agent/core/hello.h"

namespace bulkhead::agent {

HostFacts collectHostFacts();

}  // namespace bulkhead::agent
