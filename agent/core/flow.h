// A network flow as seen by the agent (a local socket or a conntrack entry), and the pure
// decision of whether containment keeps it. Shared by agent/core (decisions) and agent/linux
// (which enumerates flows and cuts the ones not kept).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace bulkhead::agent {

enum class FlowProto : uint8_t { kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58, kOther = 0 };

struct Flow {
  int family = 0;                       // AF_INET or AF_INET6
  FlowProto proto = FlowProto::kTcp;
  std::array<uint8_t, 16> local_addr{}; // network byte order; IPv4 in the first 4 bytes
  uint16_t local_port = 0;              // host byte order
  std::array<uint8_t, 16> remote_addr{};
  uint16_t remote_port = 0;
  bool forwarded = false;               // conntrack entry not terminating on this host
  uint32_t owner_pid = 0;               // 0 if unknown
  std::string toString() const;         // "tcp 10.77.0.11:22 <- 10.77.0.66:51234"
};

}  // namespace bulkhead::agent
