// Pure decoders of the socket collector's (sockets.cc) UNIX and packet sock_diag dumps: one
// datagram (one or more netlink messages, as received) in, one sockets.jsonl record per socket
// out. Inet sockets are decoded by parseInetDiagDump (agent/linux/sock_diag_flow_killer.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/status/status.h"

namespace bulkhead::agent::collect {

struct SocketRecord {
  nlohmann::json record;  // without "pids"/"comms" (added once owners are known)
  uint64_t inode = 0;
};

// Appends a record per SOCK_DIAG_BY_FAMILY message to `out`; sets *done at NLMSG_DONE. The
// messages are walked by walkSockDiagDatagram (agent/linux/sock_diag.h), whose errors these
// return; a message too short for its header, and attributes that do not fit, are skipped.
absl::Status parseUnixDiagDatagram(const uint8_t* data, size_t len, std::vector<SocketRecord>* out,
                                   bool* done);
absl::Status parsePacketDiagDatagram(const uint8_t* data, size_t len,
                                     std::vector<SocketRecord>* out, bool* done);

}  // namespace bulkhead::agent::collect
