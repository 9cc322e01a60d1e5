// Network collector: links, addresses, routes (every table, v4 and v6) and neighbours of the
// agent's network namespace, dumped over rtnetlink with libnl-route caches.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/route/rtnl.h>
#include <netlink/socket.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cctype>
#include <memory>
#include <string>

#include "agent/collect/collectors.h"
#include "agent/collect/host_files.h"

namespace bulkhead::agent::collect {
namespace {

struct SockFree {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct CacheFree {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using Sock = std::unique_ptr<nl_sock, SockFree>;
using Cache = std::unique_ptr<nl_cache, CacheFree>;

// An address as plain text without prefix ("10.77.200.1", "fd77:200::1",
// "aa:bb:cc:dd:ee:ff"); null when absent.
nlohmann::json addrText(nl_addr* a) {
  if (a == nullptr || nl_addr_get_len(a) == 0) return nullptr;
  const int family = nl_addr_get_family(a);
  if (family == AF_INET || family == AF_INET6) {
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(family, nl_addr_get_binary_addr(a), buf, sizeof buf) == nullptr) return nullptr;
    return std::string(buf);
  }
  // Link-layer (and anything else): colon-separated hex, as nl_addr2str prints it.
  const auto* b = static_cast<const unsigned char*>(nl_addr_get_binary_addr(a));
  std::string out;
  for (unsigned i = 0; i < nl_addr_get_len(a); ++i) {
    if (i > 0) out += ':';
    out += fmt::format("{:02x}", b[i]);
  }
  return out;
}

std::string familyName(int family) {
  switch (family) {
    case AF_INET: return "inet";
    case AF_INET6: return "inet6";
    case AF_BRIDGE: return "bridge";
    default: return fmt::format("af{}", family);
  }
}

std::string scopeName(int scope) {
  char buf[64];
  return rtnl_scope2str(scope, buf, sizeof buf);
}

// Interface name by index from the link cache; null when unknown.
nlohmann::json devName(nl_cache* links, int ifindex) {
  if (ifindex <= 0) return nullptr;
  char buf[IFNAMSIZ + 1];
  if (links != nullptr && rtnl_link_i2name(links, ifindex, buf, sizeof buf) != nullptr) {
    return std::string(buf);
  }
  return nullptr;
}

// Runs `fn` on every object of `cache` until it returns false (sink full) or the sink stops.
template <typename T, typename Fn>
bool forEach(nl_cache* cache, ArtifactSink& sink, Fn fn) {
  for (nl_object* o = nl_cache_get_first(cache); o != nullptr; o = nl_cache_get_next(o)) {
    if (sink.stopped()) return false;
    if (!fn(reinterpret_cast<T*>(o))) return false;
  }
  return true;
}

bool emitLinks(nl_cache* links, ArtifactSink& sink) {
  return forEach<rtnl_link>(links, sink, [&](rtnl_link* l) {
    nlohmann::json r;
    r["ifindex"] = rtnl_link_get_ifindex(l);
    putText(r, "name", rtnl_link_get_name(l) != nullptr ? rtnl_link_get_name(l) : "");
    const char* kind = rtnl_link_get_type(l);
    r["kind"] = kind != nullptr ? nlohmann::json(kind) : nlohmann::json(nullptr);
    r["mac"] = addrText(rtnl_link_get_addr(l));
    r["mtu"] = rtnl_link_get_mtu(l);
    r["up"] = (rtnl_link_get_flags(l) & IFF_UP) != 0;
    const int master = rtnl_link_get_master(l);
    r["master"] = devName(links, master);
    if (master > 0) r["master_ifindex"] = master;
    char op[32];
    r["operstate"] = rtnl_link_operstate2str(rtnl_link_get_operstate(l), op, sizeof op);
    r["promisc"] = (rtnl_link_get_flags(l) & IFF_PROMISC) != 0;
    return sink.record("links.jsonl", r);
  });
}

bool emitAddresses(nl_cache* addrs, nl_cache* links, ArtifactSink& sink) {
  return forEach<rtnl_addr>(addrs, sink, [&](rtnl_addr* a) {
    nlohmann::json r;
    const int ifindex = rtnl_addr_get_ifindex(a);
    r["ifindex"] = ifindex;
    r["name"] = devName(links, ifindex);
    r["family"] = familyName(rtnl_addr_get_family(a));
    r["address"] = addrText(rtnl_addr_get_local(a));
    r["prefix_len"] = rtnl_addr_get_prefixlen(a);
    r["scope"] = scopeName(rtnl_addr_get_scope(a));
    if (nl_addr* peer = rtnl_addr_get_peer(a); peer != nullptr && nl_addr_get_len(peer) > 0 &&
                                               nl_addr_cmp(peer, rtnl_addr_get_local(a)) != 0) {
      r["peer"] = addrText(peer);
    }
    if (const char* label = rtnl_addr_get_label(a); label != nullptr) putText(r, "label", label);
    return sink.record("addresses.jsonl", r);
  });
}

bool emitRoutes(nl_cache* routes, nl_cache* links, ArtifactSink& sink) {
  return forEach<rtnl_route>(routes, sink, [&](rtnl_route* rt) {
    nlohmann::json r;
    r["table"] = rtnl_route_get_table(rt);
    r["family"] = familyName(rtnl_route_get_family(rt));
    nl_addr* dst = rtnl_route_get_dst(rt);
    if (dst == nullptr || nl_addr_get_prefixlen(dst) == 0) {
      r["dst"] = "default";
    } else {
      r["dst"] = fmt::format("{}/{}", addrText(dst).get<std::string>(), nl_addr_get_prefixlen(dst));
    }
    char buf[64];
    r["type"] = nl_rtntype2str(rtnl_route_get_type(rt), buf, sizeof buf);
    r["gateway"] = nullptr;
    r["dev"] = nullptr;
    const int hops = rtnl_route_get_nnexthops(rt);
    nlohmann::json nexthops = nlohmann::json::array();
    for (int i = 0; i < hops; ++i) {
      rtnl_nexthop* nh = rtnl_route_nexthop_n(rt, i);
      nlohmann::json hop;
      hop["gateway"] = addrText(rtnl_route_nh_get_gateway(nh));
      hop["dev"] = devName(links, rtnl_route_nh_get_ifindex(nh));
      if (i == 0) {
        r["gateway"] = hop["gateway"];
        r["dev"] = hop["dev"];
      }
      nexthops.push_back(std::move(hop));
    }
    if (hops > 1) r["nexthops"] = std::move(nexthops);  // multipath: every hop
    r["protocol"] = std::string(rtnl_route_proto2str(rtnl_route_get_protocol(rt), buf, sizeof buf));
    r["scope"] = scopeName(rtnl_route_get_scope(rt));
    r["metric"] = rtnl_route_get_priority(rt);
    if (nl_addr* src = rtnl_route_get_pref_src(rt); src != nullptr) r["pref_src"] = addrText(src);
    return sink.record("routes.jsonl", r);
  });
}

bool emitNeighbours(nl_cache* neighs, nl_cache* links, ArtifactSink& sink) {
  return forEach<rtnl_neigh>(neighs, sink, [&](rtnl_neigh* n) {
    nlohmann::json r;
    const int ifindex = rtnl_neigh_get_ifindex(n);
    r["ifindex"] = ifindex;
    r["dev"] = devName(links, ifindex);
    r["family"] = familyName(rtnl_neigh_get_family(n));
    r["address"] = addrText(rtnl_neigh_get_dst(n));
    r["mac"] = addrText(rtnl_neigh_get_lladdr(n));
    char buf[128];
    std::string state = rtnl_neigh_state2str(rtnl_neigh_get_state(n), buf, sizeof buf);
    for (char& c : state) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r["state"] = state;
    return sink.record("neighbours.jsonl", r);
  });
}

class NetworkCollector final : public Collector {
 public:
  std::string_view name() const override { return "network"; }

  absl::Status collect(const CollectContext&, ArtifactSink& sink) override {
    Sock sk(nl_socket_alloc());
    if (sk == nullptr) return absl::ResourceExhaustedError("nl_socket_alloc failed");
    if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0) {
      return absl::UnavailableError(
          fmt::format("cannot open an rtnetlink socket: {}", nl_geterror(err)));
    }
    // A dump that stalls fails after 5 s instead of waiting for the capture's time limit.
    timeval tv{5, 0};
    setsockopt(nl_socket_get_fd(sk.get()), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    nl_cache* raw = nullptr;
    int err = rtnl_link_alloc_cache(sk.get(), AF_UNSPEC, &raw);
    Cache links(raw);
    if (err < 0) {
      // Without links nothing else can name its devices; still try the rest.
      sink.warn(fmt::format("links: rtnetlink dump failed: {}", nl_geterror(err)));
      links.reset();
    } else if (!emitLinks(links.get(), sink)) {
      return absl::OkStatus();
    }
    int failed = links == nullptr ? 1 : 0;

    raw = nullptr;
    err = rtnl_addr_alloc_cache(sk.get(), &raw);
    Cache addrs(raw);
    if (err < 0) {
      sink.warn(fmt::format("addresses: rtnetlink dump failed: {}", nl_geterror(err)));
      ++failed;
    } else if (!emitAddresses(addrs.get(), links.get(), sink)) {
      return absl::OkStatus();
    }

    raw = nullptr;
    // Flags 0: every table (main, local, policy-routing tables), not only main.
    err = rtnl_route_alloc_cache(sk.get(), AF_UNSPEC, 0, &raw);
    Cache routes(raw);
    if (err < 0) {
      sink.warn(fmt::format("routes: rtnetlink dump failed: {}", nl_geterror(err)));
      ++failed;
    } else if (!emitRoutes(routes.get(), links.get(), sink)) {
      return absl::OkStatus();
    }

    raw = nullptr;
    err = rtnl_neigh_alloc_cache(sk.get(), &raw);
    Cache neighs(raw);
    if (err < 0) {
      sink.warn(fmt::format("neighbours: rtnetlink dump failed: {}", nl_geterror(err)));
      ++failed;
    } else if (!emitNeighbours(neighs.get(), links.get(), sink)) {
      return absl::OkStatus();
    }
    if (failed == 4) return absl::UnavailableError("every rtnetlink dump failed");
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Collector> makeNetworkCollector() { return std::make_unique<NetworkCollector>(); }

}  // namespace bulkhead::agent::collect
