#include "agent/linux/netlink_messages.h"

#include <cstring>

#include "common/format.h"

namespace bulkhead::agent {

absl::Status forEachNetlinkMessage(
    const uint8_t* data, size_t len, std::string_view what,
    absl::FunctionRef<absl::StatusOr<bool>(const NetlinkMessage&)> each) {
  size_t off = 0;
  while (off + sizeof(nlmsghdr) <= len) {
    NetlinkMessage m;
    std::memcpy(&m.header, data + off, sizeof m.header);
    if (m.header.nlmsg_len < sizeof(nlmsghdr) || off + m.header.nlmsg_len > len) {
      return absl::DataLossError(fmt::format("malformed {} (length {} at offset {} of {})", what,
                                             m.header.nlmsg_len, off, len));
    }
    m.payload = data + off + NLMSG_HDRLEN;
    m.payload_len = m.header.nlmsg_len - NLMSG_HDRLEN;
    absl::StatusOr<bool> go_on = each(m);
    if (!go_on.ok()) return go_on.status();
    if (!*go_on) break;
    off += NLMSG_ALIGN(m.header.nlmsg_len);
  }
  return absl::OkStatus();
}

}  // namespace bulkhead::agent
