// What the process actions read of /proc, as an interface: LinuxProcFs (proc_scan.h) reads
// the real /proc of the agent's PID namespace, unit tests pass a fake.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/core/processes.h"

namespace bulkhead::agent {

// Implementations must be callable from any one thread at a time.
class ProcFs {
 public:
  virtual ~ProcFs() = default;
  // Every process (kernel threads marked); processes that exit while being read are skipped.
  // `with_sockets` fills socket_inodes.
  virtual absl::StatusOr<std::vector<ProcessInfo>> scan(bool with_sockets) = 0;
  // One process, or nullopt when it is gone (or unreadable).
  virtual std::optional<ProcessInfo> read(int pid, bool with_sockets) = 0;
  // The state letter of /proc/PID/stat ('R', 'S', 'T', 'Z', ...), nullopt when it is gone.
  virtual std::optional<char> state(int pid) = 0;
  // The TCP sockets of /proc/net/tcp and tcp6.
  virtual std::vector<ProcNetSocket> tcpSockets() = 0;
  // Lower-case hex SHA-256 of the process's executable (through /proc/PID/exe, so a binary
  // deleted from disk is still read).
  virtual absl::StatusOr<std::string> exeSha256(int pid) = 0;
  // The uid of a user name (NSS), nullopt when there is no such user.
  virtual std::optional<uint32_t> uidOfUser(const std::string& name) = 0;
};

}  // namespace bulkhead::agent
