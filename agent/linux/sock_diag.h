// The agent's one NETLINK_SOCK_DIAG client: the dump loop (request, answer datagrams until
// NLMSG_DONE, bounded waits) and the walk over the messages of one answer datagram. Used by
// the flow killer (sock_diag_flow_killer.h: TCP dumps, then SOCK_DESTROY on the same socket)
// and by the socket collector (agent/collect/sockets.cc: inet, UNIX and packet dumps).
#pragma once

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::agent {

// Pure. Walks the netlink messages of one datagram of a SOCK_DIAG_BY_FAMILY or TCPDIAG_GETSOCK
// dump: calls `each(payload, length)` for every message of either type (an error from it ends the
// walk and is returned) and sets *done at NLMSG_DONE. NLMSG_ERROR, an NLMSG_DONE carrying an
// error, and a message whose length runs past the datagram are errors; other message types
// are skipped.
absl::Status walkSockDiagDatagram(const uint8_t* data, size_t len,
                                  absl::FunctionRef<absl::Status(const uint8_t*, size_t)> each,
                                  bool* done);

// A SOCK_DIAG_BY_FAMILY dump request: the netlink header and the family's request body
// (inet_diag_req_v2, unix_diag_req, packet_diag_req, ...), zeroed but for the header and
// sdiag_family.
template <typename Req>
struct SockDiagRequest {
  nlmsghdr h;
  Req r;
};
// A dump request of netlink message `type` with a zeroed body.
template <typename Req>
SockDiagRequest<Req> dumpRequest(uint16_t type, uint32_t seq) {
  SockDiagRequest<Req> req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = type;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = seq;
  return req;
}
template <typename Req>
SockDiagRequest<Req> sockDiagDumpRequest(uint32_t seq, uint8_t family) {
  auto req = dumpRequest<Req>(SOCK_DIAG_BY_FAMILY, seq);
  req.r.sdiag_family = family;
  return req;
}

// A dump of the TCP sockets of both families (IPv4 and IPv6) in `states` (a TCPF_* mask), as
// one walk of the kernel's TCP hash table. That table is shared by every network namespace and
// sized by the machine's memory (262,144 buckets on a 24 GiB machine); the walk costs about as
// much on a host with three sockets as with thousands: 1.9 ms here, once per family with
// SOCK_DIAG_BY_FAMILY. This is the kernel's legacy TCPDIAG_GETSOCK request (struct
// inet_diag_req), which it answers for AF_UNSPEC; the answers are inet_diag_msg records, each
// with its own family, under nlmsg_type TCPDIAG_GETSOCK.
SockDiagRequest<inet_diag_req> tcpBothFamiliesDumpRequest(uint32_t seq, uint32_t states);

// One NETLINK_SOCK_DIAG socket, bound to the network namespace of the thread that opened it.
// Movable, not copyable; not thread-safe.
class SockDiagSocket {
 public:
  // `rcvbuf_bytes`: receive buffer asked for (SO_RCVBUFFORCE where permitted, else SO_RCVBUF).
  // Acks of failed requests come without the echoed request (NETLINK_CAP_ACK).
  static absl::StatusOr<SockDiagSocket> open(int rcvbuf_bytes);
  SockDiagSocket(SockDiagSocket&& o) noexcept : fd_(o.fd_), seq_(o.seq_) { o.fd_ = -1; }
  SockDiagSocket& operator=(SockDiagSocket&& o) noexcept;
  SockDiagSocket(const SockDiagSocket&) = delete;
  SockDiagSocket& operator=(const SockDiagSocket&) = delete;
  ~SockDiagSocket();

  int fd() const { return fd_; }
  // Reserves `count` consecutive request sequence numbers (counting up from 1); returns the
  // first.
  uint32_t nextSeq(uint32_t count = 1) {
    uint32_t first = seq_;
    seq_ += count;
    return first;
  }
  // Reads and discards anything queued (answers of an earlier request that was given up).
  void drain();

  // Drains, sends the dump request `req` (`len` bytes: one netlink message) and passes every
  // answer datagram to `on_datagram` until it sets *done. Fails when sending fails, when no
  // datagram arrives within `recv_timeout`, when `stopped()` turns true (Cancelled), or with
  // the first error of `on_datagram`.
  absl::Status dump(
      const void* req, size_t len, std::chrono::milliseconds recv_timeout,
      absl::FunctionRef<absl::Status(const uint8_t*, size_t, bool*)> on_datagram,
      absl::FunctionRef<bool()> stopped = [] { return false; });

 private:
  explicit SockDiagSocket(int fd) : fd_(fd) {}
  int fd_;
  uint32_t seq_ = 1;
};

}  // namespace bulkhead::agent
