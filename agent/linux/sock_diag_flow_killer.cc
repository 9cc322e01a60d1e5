#include "agent/linux/sock_diag_flow_killer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <unordered_map>

#include "agent/linux/netlink_messages.h"
#include "agent/linux/proc_files.h"
#include "common/format.h"

namespace bulkhead::agent {
namespace {

constexpr std::chrono::milliseconds kDumpTimeout{5000};  // per recv while dumping
constexpr int kAckTimeoutMs = 2000;   // per batch, waiting for missing acks
constexpr size_t kRecvBufSize = 64 * 1024;

bool isV4Mapped(const std::array<uint8_t, 16>& a) {
  for (int i = 0; i < 10; ++i)
    if (a[i] != 0) return false;
  return a[10] == 0xff && a[11] == 0xff;
}

bool isUnspecified(const std::array<uint8_t, 16>& a) {
  for (uint8_t b : a)
    if (b != 0) return false;
  return true;
}

std::array<uint8_t, 16> unmap(const std::array<uint8_t, 16>& a) {
  std::array<uint8_t, 16> out{};
  std::memcpy(out.data(), a.data() + 12, 4);
  return out;
}

Flow flowFromDiag(const inet_diag_msg& m) {
  Flow f;
  f.proto = FlowProto::kTcp;
  f.family = m.idiag_family;
  const size_t n = m.idiag_family == AF_INET ? 4 : 16;
  std::memcpy(f.local_addr.data(), m.id.idiag_src, n);
  std::memcpy(f.remote_addr.data(), m.id.idiag_dst, n);
  f.local_port = ntohs(m.id.idiag_sport);
  f.remote_port = ntohs(m.id.idiag_dport);
  if (f.family == AF_INET6 && isV4Mapped(f.remote_addr) &&
      (isV4Mapped(f.local_addr) || isUnspecified(f.local_addr))) {
    f.family = AF_INET;
    f.local_addr = isUnspecified(f.local_addr) ? std::array<uint8_t, 16>{} : unmap(f.local_addr);
    f.remote_addr = unmap(f.remote_addr);
  }
  return f;
}

std::string errnoText(int err) { return std::strerror(err); }

// The errno of a netlink error code (a negative errno); any int from the wire, INT_MIN too.
int negatedErrno(int code) { return static_cast<int>(-static_cast<int64_t>(code)); }

}  // namespace

uint32_t cutStatesMask() {
  uint32_t mask = 0;
  for (int s : std::initializer_list<int>{TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV,
                                          TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSE_WAIT,
                                          TCP_LAST_ACK, TCP_CLOSING, 12 /* TCP_NEW_SYN_RECV */}) {
    mask |= 1u << s;
  }
  return mask;
}

std::string describeFlow(const Flow& f) { return f.toString(); }

void resolveSocketOwners(std::vector<DiagSocket>* sockets) {
  std::unordered_map<uint64_t, uint32_t> owner;  // inode -> pid (0 = not found yet)
  for (const DiagSocket& s : *sockets) {
    if (s.inode != 0) owner.emplace(s.inode, 0);
  }
  if (owner.empty()) return;
  proc::ScopedFd proc_fd = proc::openDir(AT_FDCWD, "/proc");
  if (!proc_fd.ok()) return;
  proc::forEachNumericEntry(proc_fd.get(), ".", [&](int pid, const char* name) {
    if (pid <= 0) return true;  // not a process
    proc::ScopedFd dir = proc::openDir(proc_fd.get(), name);
    if (!dir.ok()) return true;  // gone, or not ours to read
    proc::forEachSocketInode(dir.get(), [&](uint64_t inode) {
      auto it = owner.find(inode);
      const auto p = static_cast<uint32_t>(pid);
      if (it != owner.end() && (it->second == 0 || p < it->second)) it->second = p;
      return true;
    });
    return true;
  });
  for (DiagSocket& s : *sockets) {
    auto it = owner.find(s.inode);
    if (it != owner.end()) s.flow.owner_pid = it->second;
  }
}

absl::Status parseInetDiagDump(const void* data, size_t len, std::vector<DiagSocket>* out,
                               bool* done) {
  auto each = [out](const uint8_t* payload, size_t plen) {
    if (plen < sizeof(inet_diag_msg)) {
      return absl::DataLossError(fmt::format("short inet_diag_msg ({} bytes)", plen));
    }
    inet_diag_msg m;
    std::memcpy(&m, payload, sizeof(m));
    if (m.idiag_family != AF_INET && m.idiag_family != AF_INET6) {
      return absl::DataLossError(
          fmt::format("inet_diag_msg with family {}", static_cast<int>(m.idiag_family)));
    }
    DiagSocket s;
    s.flow = flowFromDiag(m);
    s.family = m.idiag_family;
    s.state = m.idiag_state;
    s.uid = m.idiag_uid;
    s.inode = m.idiag_inode;
    s.id = m.id;
    out->push_back(s);
    return absl::OkStatus();
  };
  return walkSockDiagDatagram(static_cast<const uint8_t*>(data), len, each, done);
}

absl::Status parseNetlinkAcks(const void* data, size_t len, std::vector<NetlinkAck>* out) {
  return forEachNetlinkMessage(
      static_cast<const uint8_t*>(data), len, "netlink ack",
      [out](const NetlinkMessage& m) -> absl::StatusOr<bool> {
        if (m.header.nlmsg_type != NLMSG_ERROR) return true;
        if (m.payload_len < sizeof(int)) return absl::DataLossError("short NLMSG_ERROR");
        int err = 0;
        std::memcpy(&err, m.payload, sizeof(int));
        out->push_back({m.header.nlmsg_seq, err});
        return true;
      });
}

void appendDestroyRequest(const DiagSocket& s, uint32_t seq, std::vector<uint8_t>* buf) {
  struct {
    nlmsghdr h;
    inet_diag_req_v2 r;
  } msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.h.nlmsg_len = sizeof(msg);
  msg.h.nlmsg_type = SOCK_DESTROY;
  msg.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  msg.h.nlmsg_seq = seq;
  msg.r.sdiag_family = s.family;
  msg.r.sdiag_protocol = IPPROTO_TCP;
  msg.r.idiag_states = ~0u;
  msg.r.id = s.id;
  static_assert(sizeof(msg) % NLMSG_ALIGNTO == 0);
  const auto* p = reinterpret_cast<const uint8_t*>(&msg);
  buf->insert(buf->end(), p, p + sizeof(msg));
}

absl::StatusOr<std::unique_ptr<SockDiagFlowKiller>> SockDiagFlowKiller::create(Options options) {
  if (options.destroy_batch == 0) options.destroy_batch = 1;
  // Room for a whole batch of acks.
  auto diag = SockDiagSocket::open(8 << 20);
  if (!diag.ok()) return diag.status();
  std::unique_ptr<ConntrackTable> ct;
  std::string ct_error;
  if (options.conntrack) {
    auto c = ConntrackTable::create();
    if (c.ok()) {
      ct = *std::move(c);
    } else {
      ct_error = fmt::format("conntrack entries not cut: {}", c.status());
    }
  }
  return std::unique_ptr<SockDiagFlowKiller>(
      new SockDiagFlowKiller(options, *std::move(diag), std::move(ct), std::move(ct_error)));
}

SockDiagFlowKiller::SockDiagFlowKiller(Options options, SockDiagSocket diag,
                                       std::unique_ptr<ConntrackTable> ct, std::string ct_error)
    : options_(options), diag_(std::move(diag)), ct_(std::move(ct)), ct_error_(std::move(ct_error)) {}

SockDiagFlowKiller::~SockDiagFlowKiller() = default;

absl::StatusOr<std::vector<DiagSocket>> SockDiagFlowKiller::dumpTcpBothFamilies() {
  auto req = tcpBothFamiliesDumpRequest(diag_.nextSeq(), cutStatesMask());
  std::vector<DiagSocket> out;
  absl::Status s =
      diag_.dump(&req, sizeof req, kDumpTimeout, [&out](const uint8_t* data, size_t n, bool* done) {
        return parseInetDiagDump(data, n, &out, done);
      });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::vector<DiagSocket>> SockDiagFlowKiller::dumpTcp(int family) {
  auto req = sockDiagDumpRequest<inet_diag_req_v2>(diag_.nextSeq(), static_cast<uint8_t>(family));
  req.r.sdiag_protocol = IPPROTO_TCP;
  req.r.idiag_states = cutStatesMask();
  std::vector<DiagSocket> out;
  absl::Status s = diag_.dump(&req, sizeof req, kDumpTimeout,
                              [&out](const uint8_t* data, size_t n, bool* done) {
                                return parseInetDiagDump(data, n, &out, done);
                              });
  if (!s.ok()) return s;
  return out;
}

void SockDiagFlowKiller::destroy(const std::vector<const DiagSocket*>& chosen, CutReport* report) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  std::vector<uint8_t> out;
  std::vector<uint8_t> in(kRecvBufSize);
  std::vector<NetlinkAck> acks;
  std::vector<int> result;  // per request in the batch: 1 = no ack yet
  diag_.drain();
  const int fd = diag_.fd();
  for (size_t start = 0; start < chosen.size(); start += options_.destroy_batch) {
    const size_t n = std::min(options_.destroy_batch, chosen.size() - start);
    const uint32_t base = diag_.nextSeq(static_cast<uint32_t>(n));
    out.clear();
    for (size_t i = 0; i < n; ++i) {
      appendDestroyRequest(*chosen[start + i], base + static_cast<uint32_t>(i), &out);
    }
    result.assign(n, 1);
    size_t pending = n;
    bool lost = false;
    // The kernel processes every message of the datagram inside sendto(); acks are queued
    // by the time it returns.
    if (sendto(fd, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof(kernel)) < 0) {
      report->errors.push_back(
          fmt::format("SOCK_DESTROY of {} sockets not sent: {}", n, errnoText(errno)));
      continue;
    }
    while (pending > 0) {
      ssize_t r = recv(fd, in.data(), in.size(), MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          lost = true;
          continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) break;
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, lost ? 0 : kAckTimeoutMs) <= 0) break;
        continue;
      }
      acks.clear();
      (void)parseNetlinkAcks(in.data(), static_cast<size_t>(r), &acks);
      for (const NetlinkAck& a : acks) {
        const uint32_t idx = a.seq - base;
        if (idx >= n || result[idx] != 1) continue;  // stale or duplicate
        result[idx] = a.error;
        --pending;
      }
    }
    bool unsupported = false;
    size_t destroyed_here = 0;
    for (size_t i = 0; i < n; ++i) {
      const Flow& f = chosen[start + i]->flow;
      const int err = result[i];
      if (err == 0) {
        report->sockets_destroyed.push_back(f);
        ++destroyed_here;
      } else if (err == -ENOENT) {
        // Closed between the dump and the destroy: nothing left to cut.
      } else if (err == -EOPNOTSUPP) {
        unsupported = true;
      } else if (err == 1) {
        report->errors.push_back(fmt::format("{}: SOCK_DESTROY not acknowledged{}", describeFlow(f),
                                             lost ? " (ack queue overflowed)" : ""));
      } else {
        report->errors.push_back(fmt::format("{}: SOCK_DESTROY failed: {}", describeFlow(f),
                                             errnoText(negatedErrno(err))));
      }
    }
    if (unsupported) {
      report->errors.push_back(fmt::format(
          "SOCK_DESTROY not supported by this kernel (CONFIG_INET_DIAG_DESTROY missing): "
          "{} chosen sockets stay established (the firewall only stalls them)",
          chosen.size() - start - destroyed_here));
      return;
    }
  }
}

absl::StatusOr<CutReport> SockDiagFlowKiller::cut(const FlowSelector& selector, bool dry_run) {
  std::lock_guard<std::mutex> lock(mu_);
  CutReport report;
  std::vector<std::string> fatal;
  if (options_.sockets) {
    std::vector<DiagSocket> all;
    bool dumped = false;
    if (auto both = dumpTcpBothFamilies(); both.ok()) {
      all = *std::move(both);
      dumped = true;
    } else {  // a kernel without the legacy request: one dump per family
      for (int family : {AF_INET, AF_INET6}) {
        auto d = dumpTcp(family);
        if (!d.ok()) {
          report.errors.push_back(fmt::format("{} TCP sockets not enumerated, none of them cut: {}",
                                              family == AF_INET ? "IPv4" : "IPv6", d.status()));
          continue;
        }
        dumped = true;
        all.insert(all.end(), d->begin(), d->end());
      }
    }
    if (!dumped) fatal.push_back("socket dump failed");
    if (options_.resolve_owners) resolveSocketOwners(&all);
    std::vector<const DiagSocket*> chosen;
    for (const DiagSocket& s : all) {
      if (selector(s.flow)) {
        chosen.push_back(&s);
      } else {
        report.sockets_kept.push_back(s.flow);
      }
    }
    if (dry_run) {
      for (const DiagSocket* s : chosen) report.sockets_destroyed.push_back(s->flow);
    } else {
      destroy(chosen, &report);
    }
  }
  if (options_.conntrack) {
    if (!ct_) {
      report.errors.push_back(ct_error_);
      fatal.push_back("no conntrack socket");
    } else if (auto s = ct_->cut(selector, dry_run, &report); !s.ok()) {
      report.errors.push_back(fmt::format("conntrack entries not cut: {}", s));
      fatal.push_back("conntrack dump failed");
    }
  }
  const size_t parts = (options_.sockets ? 1 : 0) + (options_.conntrack ? 1 : 0);
  if (parts > 0 && fatal.size() == parts) {
    std::string all;
    for (const auto& e : report.errors) all += (all.empty() ? "" : "; ") + e;
    return absl::UnavailableError(
        fmt::format("no flow could be enumerated, nothing was cut (established connections stay "
                    "open until the firewall stalls them): {}",
                    all));
  }
  return report;
}

}  // namespace bulkhead::agent
