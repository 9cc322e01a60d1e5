// What an agent says about itself in Hello, checked before the controller believes any of it.
// The host id comes from the certificate; every other field is the agent's claim and is
// validated here: pure, no I/O.
#pragma once

#include <cstddef>

#include "absl/status/statusor.h"
#include "bulkhead/v1/agent.pb.h"
#include "controller/core/registry.h"

namespace bulkhead::controller {

// Bounds on a Hello's fields.
inline constexpr size_t kMaxHelloAddresses = 256;
inline constexpr size_t kMaxHelloLabels = 64;
inline constexpr size_t kMaxHostnameBytes = 253;  // a fully qualified DNS name
inline constexpr size_t kMaxOsBytes = 256;
inline constexpr size_t kMaxAgentVersionBytes = 64;

// The Hello's facts, or INVALID_ARGUMENT naming the field and the value at fault:
//   addresses  at most kMaxHelloAddresses, each "IP/PREFIX" (or a bare IP) with a prefix length
//              valid for its family; loopback and unspecified addresses are refused (they
//              name no host: every host has them);
//   labels     at most kMaxHelloLabels, keys and values as `--label k=v` takes them
//              (1-63 characters of [A-Za-z0-9._/-]);
//   hostname   at most kMaxHostnameBytes of printable ASCII without spaces (may be empty);
//   os, agent_version  printable ASCII (spaces allowed), bounded;
//   ruleset_hash  empty or 1-64 lowercase hex digits.
// The enforced generation is copied as claimed: the Fleet bounds it by what it issued.
absl::StatusOr<HelloInfo> helloInfoFrom(const bulkhead::v1::Hello& hello);

}  // namespace bulkhead::controller
