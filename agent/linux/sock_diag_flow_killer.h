// SockDiagFlowKiller: the FlowKiller on NETLINK_SOCK_DIAG (dump + SOCK_DESTROY, as `ss -K`) and
// ctnetlink (conntrack deletion). The byte parsers are separate free functions so that unit
// tests feed them fixtures without root.
#pragma once

#include <linux/inet_diag.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/linux/conntrack.h"
#include "agent/linux/flow_killer.h"
#include "agent/linux/sock_diag.h"

namespace bulkhead::agent {

// One TCP socket from a SOCK_DIAG_BY_FAMILY dump.
struct DiagSocket {
  Flow flow;           // IPv4-mapped IPv6 sockets are presented as AF_INET flows
  uint8_t family = 0;  // family the kernel reported (needed for SOCK_DESTROY)
  uint8_t state = 0;   // TCP state (linux/tcp_states.h numbering)
  uint32_t uid = 0;
  uint32_t inode = 0;
  inet_diag_sockid id{};  // opaque kernel id incl. cookie, echoed back in SOCK_DESTROY
};

// TCP states cut() enumerates: every state but LISTEN, TIME_WAIT and CLOSE (an unconnected
// socket carries no traffic). Bit n = state n.
uint32_t cutStatesMask();

// Pure. Parses one datagram (one or more netlink messages) of a SOCK_DIAG_BY_FAMILY dump,
// appending to `out`. Sets *done when NLMSG_DONE is seen. A NLMSG_ERROR message or a
// malformed message is an error.
absl::Status parseInetDiagDump(const void* data, size_t len, std::vector<DiagSocket>* out,
                               bool* done);

// One netlink acknowledgement: `error` is 0 or a negative errno.
struct NetlinkAck {
  uint32_t seq = 0;
  int error = 0;
};

// Pure. Parses one datagram of NLMSG_ERROR acks (as sent for NLM_F_ACK requests).
absl::Status parseNetlinkAcks(const void* data, size_t len, std::vector<NetlinkAck>* out);

// Pure. The SOCK_DESTROY request for one dumped socket (nlmsghdr + inet_diag_req_v2), appended
// to `buf`.
void appendDestroyRequest(const DiagSocket& s, uint32_t seq, std::vector<uint8_t>* buf);

// Flow::toString(): "tcp 10.77.0.11:22 <- 10.77.0.66:51234" (local <- remote).
std::string describeFlow(const Flow& f);

// Sets Flow::owner_pid of each socket to the lowest pid holding its inode open (0 if none is
// found), scanning /proc/*/fd (pids of the PID namespace /proc was mounted for). Unreadable
// processes are skipped.
void resolveSocketOwners(std::vector<DiagSocket>* sockets);

// Thread-compatible: one cut() at a time (an internal mutex serialises stray callers). All
// sockets are opened by create() and bound to the network namespace of the calling thread at
// that time; flows of other namespaces (containers) need one killer per namespace.
class SockDiagFlowKiller final : public FlowKiller {
 public:
  struct Options {
    bool sockets = true;         // SOCK_DESTROY local TCP sockets
    bool conntrack = true;       // delete conntrack entries
    size_t destroy_batch = 512;  // SOCK_DESTROY requests per sendmsg
    // Fill Flow::owner_pid of sockets (before the selector sees them) by scanning
    // /proc/*/fd of the mounted /proc: costs one readlink per open fd on the host.
    bool resolve_owners = false;
  };

  static absl::StatusOr<std::unique_ptr<SockDiagFlowKiller>> create(Options options);
  static absl::StatusOr<std::unique_ptr<SockDiagFlowKiller>> create() { return create({}); }
  ~SockDiagFlowKiller() override;
  SockDiagFlowKiller(const SockDiagFlowKiller&) = delete;
  SockDiagFlowKiller& operator=(const SockDiagFlowKiller&) = delete;

  // Order: dump TCP sockets (v4 and v6 in one dump; one per family if the kernel refuses
  // that), destroy the chosen ones in batches, then dump conntrack
  // and delete the chosen entries. Returns an error only when nothing could be enumerated;
  // partial failures are listed in CutReport::errors. A kernel without
  // CONFIG_INET_DIAG_DESTROY yields one clear error and no destroyed sockets (the chosen
  // connections stay established; only the firewall stalls them).
  absl::StatusOr<CutReport> cut(const FlowSelector& selector, bool dry_run) override;

  // Dumps the TCP sockets of both families in cutStatesMask() states with one walk of the
  // kernel's TCP table (tcpBothFamiliesDumpRequest, sock_diag.h).
  absl::StatusOr<std::vector<DiagSocket>> dumpTcpBothFamilies();
  // Dumps TCP sockets of `family` (AF_INET or AF_INET6) in cutStatesMask() states: the way
  // when a kernel refuses the dump of both.
  absl::StatusOr<std::vector<DiagSocket>> dumpTcp(int family);

 private:
  SockDiagFlowKiller(Options options, SockDiagSocket diag, std::unique_ptr<ConntrackTable> ct,
                     std::string ct_error);
  // Destroys `chosen`, appending successes to report->sockets_destroyed.
  void destroy(const std::vector<const DiagSocket*>& chosen, CutReport* report);

  std::mutex mu_;
  const Options options_;
  SockDiagSocket diag_;
  std::unique_ptr<ConntrackTable> ct_;  // null if ctnetlink could not be opened
  std::string ct_error_;                // why ct_ is null
};

}  // namespace bulkhead::agent
