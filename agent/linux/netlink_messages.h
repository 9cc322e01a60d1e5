// The walk over the netlink messages of one received datagram, shared by every netlink
// decoder of the agent (sock_diag dumps and acks, nf_tables events). Pure.
#pragma once

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::agent {

// One netlink message of a datagram: its header (copied) and the bytes after it.
struct NetlinkMessage {
  nlmsghdr header;
  const uint8_t* payload;
  size_t payload_len;
};

// Calls `each` for every netlink message of the datagram `data` (`len` bytes), in order, until
// it returns false or an error (returned as is). A message whose length is shorter than its
// header or runs past the datagram is DataLoss, naming `what`; trailing bytes too short for a
// header are ignored.
absl::Status forEachNetlinkMessage(
    const uint8_t* data, size_t len, std::string_view what,
    absl::FunctionRef<absl::StatusOr<bool>(const NetlinkMessage&)> each);

}  // namespace bulkhead::agent
