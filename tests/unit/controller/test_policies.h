// A small exemption-set library shared by the controller's containment tests: ir-jump-host
// (every host), postgres-replication (role=db) and dns (opt-in).
#pragma once

#include <gtest/gtest.h>

#include "common/policy.h"

namespace bulkhead::controller {

inline PolicyLibrary testPolicyLibrary() {
  auto lib = buildPolicyLibrary({
      {"jump.yaml", R"(name: ir-jump-host
description: responders
selector: "*"
rules:
  - direction: in
    proto: tcp
    remote: 10.77.0.40/32
    port: 22
)"},
      {"pg.yaml", R"(name: postgres-replication
description: replication
selector: role=db
rules:
  - direction: in
    proto: tcp
    remote: 10.77.1.22/32
    port: 5432
)"},
      {"dns.yaml", R"(name: dns
description: resolvers
rules:
  - direction: out
    proto: udp
    remote: 10.77.0.50/32
    port: 53
)"},
  });
  EXPECT_TRUE(lib.ok()) << lib.status();
  return lib.ok() ? *lib : PolicyLibrary();
}

}  // namespace bulkhead::controller
