#include "agent/linux/sock_diag.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "agent/linux/netlink_messages.h"
#include "common/format.h"

namespace bulkhead::agent {
namespace {

constexpr size_t kRecvBufSize = size_t{64} * 1024;

// The strerror of a netlink error code (a negative errno); any int from the wire, INT_MIN too.
std::string netlinkErrorText(int code) {
  return std::strerror(static_cast<int>(-static_cast<int64_t>(code)));
}

}  // namespace

absl::Status walkSockDiagDatagram(const uint8_t* data, size_t len,
                                  absl::FunctionRef<absl::Status(const uint8_t*, size_t)> each,
                                  bool* done) {
  return forEachNetlinkMessage(
      data, len, "sock_diag message", [&](const NetlinkMessage& m) -> absl::StatusOr<bool> {
        const uint16_t type = m.header.nlmsg_type;
        if (type == NLMSG_DONE || type == NLMSG_ERROR) {
          int err = 0;
          if (m.payload_len >= sizeof err) std::memcpy(&err, m.payload, sizeof err);
          if (type == NLMSG_ERROR || err < 0) {
            return absl::UnavailableError(
                fmt::format("sock_diag dump failed: {}", netlinkErrorText(err)));
          }
          *done = true;
          return false;
        }
        if (type == SOCK_DIAG_BY_FAMILY || type == TCPDIAG_GETSOCK) {
          if (absl::Status s = each(m.payload, m.payload_len); !s.ok()) return s;
        }
        return true;
      });
}

SockDiagRequest<inet_diag_req> tcpBothFamiliesDumpRequest(uint32_t seq, uint32_t states) {
  auto req = dumpRequest<inet_diag_req>(TCPDIAG_GETSOCK, seq);
  req.r.idiag_family = AF_INET;  // routes the request; the kernel dumps it for AF_UNSPEC
  req.r.idiag_states = states;
  return req;
}

absl::StatusOr<SockDiagSocket> SockDiagSocket::open(int rcvbuf_bytes) {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) {
    return absl::UnavailableError(
        fmt::format("cannot open a NETLINK_SOCK_DIAG socket: {}", std::strerror(errno)));
  }
  // FORCE needs CAP_NET_ADMIN (which SOCK_DESTROY needs anyway); else the sysctl caps it.
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf_bytes, sizeof rcvbuf_bytes) != 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof rcvbuf_bytes);
  }
  int one = 1;
  ::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  return SockDiagSocket(fd);
}

SockDiagSocket& SockDiagSocket::operator=(SockDiagSocket&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    seq_ = o.seq_;
    o.fd_ = -1;
  }
  return *this;
}

SockDiagSocket::~SockDiagSocket() {
  if (fd_ >= 0) ::close(fd_);
}

void SockDiagSocket::drain() {
  std::vector<uint8_t> buf(kRecvBufSize);
  for (int i = 0; i < 100000; ++i) {
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 && errno != ENOBUFS) return;
  }
}

absl::Status SockDiagSocket::dump(
    const void* req, size_t len, std::chrono::milliseconds recv_timeout,
    absl::FunctionRef<absl::Status(const uint8_t*, size_t, bool*)> on_datagram,
    absl::FunctionRef<bool()> stopped) {
  drain();
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_, req, len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    return absl::UnavailableError(fmt::format("sock_diag dump request: {}", std::strerror(errno)));
  }
  std::vector<uint8_t> buf(kRecvBufSize);
  bool done = false;
  while (!done) {
    if (stopped()) return absl::CancelledError("sock_diag dump stopped");
    pollfd p{fd_, POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(recv_timeout.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) {
      return absl::DeadlineExceededError(fmt::format(
          "sock_diag dump timed out: no answer from the kernel in {} ms", recv_timeout.count()));
    }
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(fmt::format("sock_diag dump: {}", std::strerror(errno)));
    }
    if (absl::Status s = on_datagram(buf.data(), static_cast<size_t>(n), &done); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace bulkhead::agent
