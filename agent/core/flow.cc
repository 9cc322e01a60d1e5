#include "agent/core/flow.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <fmt/format.h>

namespace bulkhead::agent {
namespace {

std::string protoName(FlowProto p) {
  switch (p) {
    case FlowProto::kTcp: return "tcp";
    case FlowProto::kUdp: return "udp";
    case FlowProto::kIcmp: return "icmp";
    case FlowProto::kIcmpv6: return "icmpv6";
    case FlowProto::kOther: break;
  }
  return "other";
}

std::string endpoint(int family, const std::array<uint8_t, 16>& addr, uint16_t port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof buf) == nullptr) {
    return "?";
  }
  if (family == AF_INET6) return fmt::format("[{}]:{}", buf, port);
  return fmt::format("{}:{}", buf, port);
}

}  // namespace

std::string Flow::toString() const {
  return fmt::format("{} {} {} {}{}", protoName(proto), endpoint(family, local_addr, local_port),
                     forwarded ? "<>" : "<-", endpoint(family, remote_addr, remote_port),
                     owner_pid != 0 ? fmt::format(" pid {}", owner_pid) : "");
}

}  // namespace bulkhead::agent
