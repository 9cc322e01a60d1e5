// sshguard's backend protocol: sshguard starts its BACKEND once and writes one command per
// line on its stdin until it exits (EOF):
//   block ADDR TYPE PREFIX     TYPE 4 or 6; PREFIX the prefix length to block (IPV4_SUBNET /
//                              IPV6_SUBNET, 32 / 128 for the address alone)
//   release ADDR TYPE PREFIX   the block expired
//   flush                      remove every block (sshguard's start and exit)
// Pure: `bulkhead-agent sshguard-backend` does the reading and the sending.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulkhead::agent {

struct SshguardCommand {
  enum class Kind { kBlock, kRelease, kFlush };
  Kind kind = Kind::kFlush;
  // kBlock, kRelease: the network to block, canonical ("192.0.2.0/24"; the address's host
  // bits below PREFIX are cleared, as sshguard's own backends block ADDR/PREFIX).
  std::string cidr;
};

// One line (trailing newline and spaces ignored). INVALID_ARGUMENT naming the part at fault;
// an empty line is an error too.
absl::StatusOr<SshguardCommand> parseSshguardLine(std::string_view line);

}  // namespace bulkhead::agent
