// The agent-controller protocol's version, exchanged in Hello (agent) and Welcome (controller).
//   major  a change the other side cannot understand: peers of different majors refuse each
//          other, saying which side to upgrade;
//   minor  additions an older peer ignores: peers one (or more) minor apart work together, the
//          newer side not relying on what the older one lacks.
// A Hello or Welcome without the field comes from a release before the exchange: protocol 1.0.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace bulkhead {

struct ProtocolVersion {
  uint32_t major = 0;
  uint32_t minor = 0;
  bool operator==(const ProtocolVersion&) const = default;
};

// This build's protocol. 1.0: releases before the exchange; 1.1: Hello.protocol and
// Welcome.protocol.
inline constexpr ProtocolVersion kProtocolVersion{1, 1};

// What a peer speaks, from the message's field (absent: 1.0).
ProtocolVersion peerProtocol(bool present, uint32_t major, uint32_t minor);

// "1.1".
std::string protocolText(ProtocolVersion v);

// "MAJOR.MINOR" (each 0-9999) -> version; InvalidArgument naming the text otherwise.
absl::Status parseProtocolVersion(std::string_view text, ProtocolVersion* out);

// OK when `theirs` can work with `ours` (same major). Otherwise FailedPrecondition naming both
// sides ("this controller", "agent web-03 (bulkhead 2.0.0)"), their versions and which one to
// upgrade (the older).
absl::Status checkPeerProtocol(std::string_view self, std::string_view peer, ProtocolVersion theirs,
                               ProtocolVersion ours = kProtocolVersion);

}  // namespace bulkhead
