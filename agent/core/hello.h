// Builds the Hello the agent sends first on every stream, from facts gathered by agent/linux.
// Pure: the facts are plain values, so tests feed fixtures.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bulkhead/v1/agent.pb.h"
#include "common/parse.h"
#include "common/protocol_version.h"

namespace bulkhead::agent {

struct InterfaceAddress {
  std::string ifname;
  int family = 0;                  // AF_INET or AF_INET6
  std::array<uint8_t, 16> addr{};  // network byte order; IPv4 in the first 4 bytes
  int prefix_len = 0;
  bool loopback_interface = false; // IFF_LOOPBACK
};

struct HostFacts {
  std::string hostname;
  std::vector<InterfaceAddress> addresses;
  std::string os_release;          // contents of /etc/os-release (may be empty)
  std::string kernel_release;      // uname -r
};

// Global unicast only: not loopback, link-local (169.254/16, fe80::/10), multicast,
// unspecified, nor on a loopback interface. Private ranges (10/8, fd00::/8) are global here:
// they are how the fleet addresses hosts.
bool isGlobalAddress(const InterfaceAddress& a);

// "10.77.1.11/24", "fd77::11/64": the address itself with its prefix length.
std::string addressToCidr(const InterfaceAddress& a);

// PRETTY_NAME from os-release text (quotes and escapes removed); falls back to NAME + VERSION,
// then "Linux".
std::string prettyNameFromOsRelease(std::string_view text);

// "Debian GNU/Linux 12 (bookworm), kernel 6.1.0-18-amd64".
std::string osDescription(const HostFacts& facts);

struct HelloInputs {
  std::string host_id;             // CN of our own certificate
  HostFacts facts;
  Labels labels;
  std::string agent_version;
  ProtocolVersion protocol = kProtocolVersion;
  uint64_t enforced_generation = 0;
  std::string ruleset_hash;
  int64_t now_unix_ms = 0;
};

// Addresses are global ones only, deduplicated, in the order given. The hostname and the OS
// description are sent as printable ASCII within the controller's bounds (253 and 256 bytes):
// any other byte becomes '?' (a space in the hostname too), so an odd os-release or hostname
// never gets the agent's hello refused.
bulkhead::v1::Hello buildHello(const HelloInputs& in);

}  // namespace bulkhead::agent
