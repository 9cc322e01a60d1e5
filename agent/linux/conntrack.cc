#include "agent/linux/conntrack.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netlink/errno.h>
#include <netlink/netfilter/ct.h>
#include <netlink/netfilter/nfnl.h>
#include <netlink/netlink.h>
#include <netlink/object.h>

#include <cerrno>
#include <fstream>
#include <cstring>

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
  for (auto& [ct, flow] : chosen) {
    if (dry_run) {
      report->conntrack_deleted.push_back(flow);
    } else {
      int err = nfnl_ct_del(sock_, ct, 0);
      if (err == 0) {
        report->conntrack_deleted.push_back(flow);
      } else if (err != -NLE_OBJ_NOTFOUND) {  // NOTFOUND: expired meanwhile
        report->errors.push_back(
            fmt::format("{}: delete failed: {}", ctFlowText(flow), nl_geterror(err)));
      }
    }
    nfnl_ct_put(ct);
  }
  return absl::OkStatus();
}

}  // namespace bulkhead::agent
