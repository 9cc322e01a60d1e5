#include "agent/linux/conntrack.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netlink/errno.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netlink.h>
#include <netlink/object.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <span>
#include <vector>

#include "common/format.h"

namespace bulkhead::agent {
namespace {

bool isLoopback(int family, const std::array<uint8_t, 16>& a) {
  if (family == AF_INET) return a[0] == 127;
  if (family == AF_INET6) {
    static constexpr std::array<uint8_t, 16> kLo6{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return a == kLo6;
  }
  return false;
}

std::array<uint8_t, 16> addrBytes(const nl_addr* a) {
  std::array<uint8_t, 16> out{};
  if (a == nullptr) return out;
  unsigned int len = nl_addr_get_len(a);
  if (len > out.size()) len = out.size();
  std::memcpy(out.data(), nl_addr_get_binary_addr(a), len);
  return out;
}

std::string ctFlowText(const Flow& f) { return "conntrack " + f.toString(); }

FlowProto toFlowProto(uint8_t p) {
  switch (p) {
    case IPPROTO_TCP:
      return FlowProto::kTcp;
    case IPPROTO_UDP:
      return FlowProto::kUdp;
    case IPPROTO_ICMP:
      return FlowProto::kIcmp;
    case IPPROTO_ICMPV6:
      return FlowProto::kIcmpv6;
    default:
      return FlowProto::kOther;
  }
}

CtTuple tupleOf(nfnl_ct* ct, int repl) {
  CtTuple t;
  t.src = addrBytes(nfnl_ct_get_src(ct, repl));
  t.dst = addrBytes(nfnl_ct_get_dst(ct, repl));
  // Check the protocol before reading ports: for ICMP the same union holds id/type/code.
  if (nfnl_ct_test_proto(ct) && protoHasPorts(nfnl_ct_get_proto(ct))) {
    if (nfnl_ct_test_src_port(ct, repl)) t.sport = nfnl_ct_get_src_port(ct, repl);
    if (nfnl_ct_test_dst_port(ct, repl)) t.dport = nfnl_ct_get_dst_port(ct, repl);
  }
  return t;
}

struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};

// Dumps the conntrack table. nullptr cache (and OK) when conntrack is not available.
absl::Status dumpCache(nl_sock* sock, std::unique_ptr<nl_cache, CacheDeleter>* out) {
  nl_cache* cache = nullptr;
  int err = nfnl_ct_alloc_cache(sock, &cache);
  if (err < 0) {
    // ctnetlink not registered (nf_conntrack_netlink not loaded) or no conntrack in this
    // namespace yet: nothing to dump.
    if (err == -NLE_OPNOTSUPP || err == -NLE_OBJ_NOTFOUND || err == -NLE_NOADDR) {
      out->reset();
      return absl::OkStatus();
    }
    return absl::UnavailableError(fmt::format("conntrack dump failed: {}", nl_geterror(err)));
  }
  out->reset(cache);
  return absl::OkStatus();
}

// Delete requests sent to the kernel in one datagram. Only failures are answered, so the
// answers of a batch fit the socket's receive buffer (default 208 KiB; an answer with its copy
// of the request takes about 1 KiB of it) even when every entry of the batch has expired.
constexpr size_t kDeleteBatch = 128;

// Deletes the entries of `batch`: one send for all of its requests, then the answers. Only the
// last request asks for an acknowledgement; the kernel handles a datagram's requests in order,
// so that acknowledgement (or that request's own error) comes after every other answer.
// Appends deleted entries to report->conntrack_deleted and failures to report->errors; an entry
// already gone (ENOENT: it expired meanwhile) is neither. Returns an error only when the batch
// could not be sent or its answers not read, naming how many entries are in doubt.
absl::Status deleteBatch(nl_sock* sock, std::span<std::pair<nfnl_ct*, Flow>> batch,
                         uint32_t* next_seq, CutReport* report) {
  std::vector<char> datagram;
  if (*next_seq > UINT32_MAX - batch.size()) *next_seq = 1U << 31;  // no wrap inside a batch
  const uint32_t first_seq = *next_seq;
  for (size_t i = 0; i < batch.size(); ++i) {
    nl_msg* msg = nullptr;
    if (int err = nfnl_ct_build_delete_request(batch[i].first, 0, &msg); err < 0) {
      return absl::InternalError(
          fmt::format("conntrack: cannot build a delete request: {}", nl_geterror(err)));
    }
    nlmsghdr* h = nlmsg_hdr(msg);
    // Sequence numbers of our own, apart from libnl's (whose counters must stay in step for
    // its next dump); every answer to these is read here.
    h->nlmsg_seq = (*next_seq)++;
    h->nlmsg_pid = 0;
    h->nlmsg_flags = NLM_F_REQUEST | (i + 1 == batch.size() ? NLM_F_ACK : 0);
    const auto* bytes = reinterpret_cast<const char*>(h);
    datagram.insert(datagram.end(), bytes, bytes + NLMSG_ALIGN(h->nlmsg_len));
    nlmsg_free(msg);
  }
  const uint32_t last_seq = first_seq + static_cast<uint32_t>(batch.size()) - 1;
  if (int err = nl_sendto(sock, datagram.data(), datagram.size()); err < 0) {
    return absl::UnavailableError(fmt::format("conntrack: sending {} delete requests failed: {}",
                                              batch.size(), nl_geterror(err)));
  }
  std::vector<bool> failed(batch.size(), false);
  std::vector<char> answer(size_t{64} * 1024);
  const int fd = nl_socket_get_fd(sock);
  for (bool done = false; !done;) {
    // The kernel answers while handling the send, so the answers are queued by now; the
    // bound only guards against an answer that never comes.
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) {
      return absl::DeadlineExceededError(fmt::format(
          "conntrack: no acknowledgement for {} delete requests within 1 s", batch.size()));
    }
    const ssize_t got = recv(fd, answer.data(), answer.size(), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(
          fmt::format("conntrack: reading the answers to {} delete requests failed: {}",
                      batch.size(), std::strerror(errno)));
    }
    // The answers, one nlmsghdr after another (what NLMSG_OK and NLMSG_NEXT walk, without
    // their casts).
    for (size_t at = 0; at + sizeof(nlmsghdr) <= static_cast<size_t>(got);) {
      nlmsghdr h;
      std::memcpy(&h, answer.data() + at, sizeof h);
      if (h.nlmsg_len < sizeof h || at + h.nlmsg_len > static_cast<size_t>(got)) break;
      const size_t here = at;
      at += NLMSG_ALIGN(h.nlmsg_len);
      if (h.nlmsg_type != NLMSG_ERROR || h.nlmsg_len < NLMSG_HDRLEN + sizeof(nlmsgerr) ||
          h.nlmsg_seq < first_seq || h.nlmsg_seq > last_seq) {
        continue;
      }
      nlmsgerr answer_error;
      std::memcpy(&answer_error, answer.data() + here + NLMSG_HDRLEN, sizeof answer_error);
      const size_t i = h.nlmsg_seq - first_seq;
      const int error = -answer_error.error;
      if (error != 0) {
        failed[i] = true;
        if (error != ENOENT) {
          report->errors.push_back(fmt::format("{}: delete failed: {}", ctFlowText(batch[i].second),
                                               std::strerror(error)));
        }
      }
      if (h.nlmsg_seq == last_seq) done = true;
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!failed[i]) report->conntrack_deleted.push_back(batch[i].second);
  }
  return absl::OkStatus();
}

}  // namespace

bool protoHasPorts(uint8_t p) {
  return p == IPPROTO_TCP || p == IPPROTO_UDP || p == IPPROTO_UDPLITE || p == IPPROTO_SCTP ||
         p == IPPROTO_DCCP;
}

absl::StatusOr<LocalAddresses> LocalAddresses::read() {
  ifaddrs* ifa = nullptr;
  if (getifaddrs(&ifa) != 0) {
    return absl::InternalError(fmt::format("getifaddrs: {}", std::strerror(errno)));
  }
  LocalAddresses out;
  for (ifaddrs* p = ifa; p != nullptr; p = p->ifa_next) {
    if (p->ifa_addr == nullptr) continue;
    std::array<uint8_t, 16> a{};
    if (p->ifa_addr->sa_family == AF_INET) {
      sockaddr_in sin;
      std::memcpy(&sin, p->ifa_addr, sizeof(sin));
      std::memcpy(a.data(), &sin.sin_addr, 4);
      out.add(AF_INET, a);
    } else if (p->ifa_addr->sa_family == AF_INET6) {
      sockaddr_in6 sin6;
      std::memcpy(&sin6, p->ifa_addr, sizeof(sin6));
      std::memcpy(a.data(), &sin6.sin6_addr, 16);
      out.add(AF_INET6, a);
    }
  }
  freeifaddrs(ifa);
  return out;
}

void LocalAddresses::add(int family, const std::array<uint8_t, 16>& addr) {
  addrs_.insert({family, addr});
}

bool LocalAddresses::contains(int family, const std::array<uint8_t, 16>& addr) const {
  return isLoopback(family, addr) || addrs_.count({family, addr}) > 0;
}

Flow flowFromConntrack(int family, uint8_t l4proto, const CtTuple& orig, const CtTuple& reply,
                       const LocalAddresses& local) {
  Flow f;
  f.family = family;
  f.proto = toFlowProto(l4proto);
  const bool orig_src_local = local.contains(family, orig.src);
  const bool orig_dst_local = local.contains(family, orig.dst);
  const bool reply_local = local.contains(family, reply.src) || local.contains(family, reply.dst);
  const bool is_local = (orig_src_local || orig_dst_local) && reply_local;
  if (is_local && !orig_src_local) {  // inbound: the peer initiated
    f.local_addr = orig.dst;
    f.local_port = orig.dport;
    f.remote_addr = orig.src;
    f.remote_port = orig.sport;
  } else {  // outbound (this host initiated) or forwarded (initiator in local_*)
    f.local_addr = orig.src;
    f.local_port = orig.sport;
    f.remote_addr = orig.dst;
    f.remote_port = orig.dport;
  }
  f.forwarded = !is_local;
  return f;
}

bool conntrackEmpty() {
  std::ifstream in("/proc/sys/net/netfilter/nf_conntrack_count");
  if (!in) return true;  // nf_conntrack not loaded for this namespace: no entries exist
  long count = -1;
  in >> count;
  return in && count == 0;
}

absl::StatusOr<std::unique_ptr<ConntrackTable>> ConntrackTable::create() {
  nl_sock* sock = nl_socket_alloc();
  if (sock == nullptr) return absl::ResourceExhaustedError("nl_socket_alloc failed");
  int err = nfnl_connect(sock);
  if (err < 0) {
    nl_socket_free(sock);
    return absl::UnavailableError(
        fmt::format("cannot open a ctnetlink socket: {}", nl_geterror(err)));
  }
  // Large dumps: avoid ENOBUFS on the receive side.
  nl_socket_set_buffer_size(sock, 4 << 20, 0);
  return std::unique_ptr<ConntrackTable>(new ConntrackTable(sock));
}

ConntrackTable::ConntrackTable(nl_sock* sock) : sock_(sock) {}

ConntrackTable::~ConntrackTable() {
  nl_close(sock_);
  nl_socket_free(sock_);
}

absl::StatusOr<std::vector<Flow>> ConntrackTable::list() {
  CutReport report;
  if (auto s = cut([](const Flow&) { return false; }, true, &report); !s.ok()) return s;
  return report.conntrack_kept;
}

absl::Status ConntrackTable::cut(const FlowSelector& selector, bool dry_run, CutReport* report) {
  // An empty (or absent) conntrack table has nothing to cut: the counter costs microseconds,
  // a ctnetlink dump about 10 ms even when empty. The counter is per network namespace.
  if (conntrackEmpty()) return absl::OkStatus();
  auto local = LocalAddresses::read();
  if (!local.ok()) return local.status();
  std::unique_ptr<nl_cache, CacheDeleter> cache;
  if (auto s = dumpCache(sock_, &cache); !s.ok()) return s;
  if (!cache) return absl::OkStatus();

  std::vector<std::pair<nfnl_ct*, Flow>> chosen;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
       obj = nl_cache_get_next(obj)) {
    auto* ct = reinterpret_cast<nfnl_ct*>(obj);
    const int family = nfnl_ct_get_family(ct);
    if (family != AF_INET && family != AF_INET6) continue;
    const uint8_t proto = nfnl_ct_test_proto(ct) ? nfnl_ct_get_proto(ct) : 0;
    Flow f = flowFromConntrack(family, proto, tupleOf(ct, 0), tupleOf(ct, 1), *local);
    if (selector(f)) {
      nl_object_get(obj);  // keep it alive past the loop
      chosen.emplace_back(ct, f);
    } else {
      report->conntrack_kept.push_back(f);
    }
  }
  if (dry_run) {
    for (auto& [ct, flow] : chosen) {
      report->conntrack_deleted.push_back(flow);
      nfnl_ct_put(ct);
    }
    return absl::OkStatus();
  }
  std::span<std::pair<nfnl_ct*, Flow>> rest(chosen);
  absl::Status status;
  while (!rest.empty() && status.ok()) {
    const size_t n = std::min(rest.size(), kDeleteBatch);
    status = deleteBatch(sock_, rest.first(n), &batch_seq_, report);
    rest = rest.subspan(n);
  }
  for (auto& [ct, flow] : chosen) nfnl_ct_put(ct);
  return status;
  return absl::OkStatus();
}

}  // namespace bulkhead::agent
