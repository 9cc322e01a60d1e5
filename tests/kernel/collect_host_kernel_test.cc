// The network and firewall collectors against the real kernel, inside this process's private
// network namespace: a dummy link with v4/v6 addresses, a route, a permanent neighbour and an
// nftables table, all set up through libnl and libnftables (no shelling out).
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <nftables/libnftables.h>

#include <chrono>
#include <string>

#include "agent/collect/collectors.h"
#include "tests/kernel/private_netns.h"
#include "tests/unit/agent/memory_sink.h"

namespace bulkhead::agent::collect {
namespace {

using testing::MemorySink;
using Clock = std::chrono::steady_clock;

constexpr const char* kLink = "bhcap0";

nlohmann::json find(const std::vector<nlohmann::json>& records, const std::string& key,
                    const nlohmann::json& value) {
  for (const auto& r : records) {
    if (r.contains(key) && r[key] == value) return r;
  }
  return nullptr;
}

// Fails the test with libnl's message when `err` < 0.
#define NL_OK(expr)                                                 \
  do {                                                              \
    int nl_err_ = (expr);                                           \
    ASSERT_GE(nl_err_, 0) << #expr << ": " << nl_geterror(nl_err_); \
  } while (0)

class CollectHostKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BULKHEAD_REQUIRE_PRIVATE_NETNS();
    sk_ = nl_socket_alloc();
    ASSERT_NE(sk_, nullptr);
    NL_OK(nl_connect(sk_, NETLINK_ROUTE));
  }
  void TearDown() override {
    if (sk_ != nullptr) nl_socket_free(sk_);
  }

  nl_addr* parse(const char* text, int family) {
    nl_addr* a = nullptr;
    EXPECT_EQ(nl_addr_parse(text, family, &a), 0) << text;
    return a;
  }

  // Brings the link `name` up.
  void up(const char* name) {
    int index = static_cast<int>(if_nametoindex(name));
    ASSERT_GT(index, 0) << name;
    rtnl_link* change = rtnl_link_alloc();
    rtnl_link_set_flags(change, IFF_UP);
    rtnl_link* orig = rtnl_link_alloc();
    rtnl_link_set_ifindex(orig, index);
    NL_OK(rtnl_link_change(sk_, orig, change, 0));
    rtnl_link_put(change);
    rtnl_link_put(orig);
  }

  // A dummy link (a veth pair where the kernel has no dummy driver), up, with 10.77.200.1/24 and
  // fd77:200::1/64, a route to 10.77.201.0/24 via 10.77.200.2 and a permanent
  // neighbour 10.77.200.9.
  void setUpNetwork() {
    rtnl_link* link = rtnl_link_alloc();
    rtnl_link_set_name(link, kLink);
    NL_OK(rtnl_link_set_type(link, "dummy"));
    rtnl_link_set_mtu(link, 1400);
    int err = rtnl_link_add(sk_, link, NLM_F_CREATE | NLM_F_EXCL);
    rtnl_link_put(link);
    if (err == -NLE_OPNOTSUPP) {
      kind_ = "veth";
      NL_OK(rtnl_link_veth_add(sk_, kLink, "bhcap1", getpid()));
      ASSERT_NO_FATAL_FAILURE(up("bhcap1"));
      rtnl_link* mtu = rtnl_link_alloc();
      rtnl_link_set_mtu(mtu, 1400);
      rtnl_link* orig = rtnl_link_alloc();
      rtnl_link_set_ifindex(orig, static_cast<int>(if_nametoindex(kLink)));
      NL_OK(rtnl_link_change(sk_, orig, mtu, 0));
      rtnl_link_put(mtu);
      rtnl_link_put(orig);
    } else {
      NL_OK(err);
    }
    ifindex_ = static_cast<int>(if_nametoindex(kLink));
    ASSERT_GT(ifindex_, 0);
    ASSERT_NO_FATAL_FAILURE(up(kLink));

    for (auto [text, family] :
         {std::pair{"10.77.200.1/24", AF_INET}, std::pair{"fd77:200::1/64", AF_INET6}}) {
      rtnl_addr* addr = rtnl_addr_alloc();
      rtnl_addr_set_ifindex(addr, ifindex_);
      nl_addr* local = parse(text, family);
      NL_OK(rtnl_addr_set_local(addr, local));
      // IFA_F_NODAD: the v6 address is usable at once, not "tentative".
      rtnl_addr_set_flags(addr, IFA_F_NODAD);
      NL_OK(rtnl_addr_add(sk_, addr, 0));
      nl_addr_put(local);
      rtnl_addr_put(addr);
    }

    rtnl_route* route = rtnl_route_alloc();
    nl_addr* dst = parse("10.77.201.0/24", AF_INET);
    NL_OK(rtnl_route_set_dst(route, dst));
    rtnl_route_set_table(route, RT_TABLE_MAIN);
    rtnl_route_set_priority(route, 77);
    rtnl_nexthop* nh = rtnl_route_nh_alloc();
    nl_addr* gw = parse("10.77.200.2", AF_INET);
    rtnl_route_nh_set_gateway(nh, gw);
    rtnl_route_nh_set_ifindex(nh, ifindex_);
    rtnl_route_add_nexthop(route, nh);  // owned by the route now
    NL_OK(rtnl_route_add(sk_, route, NLM_F_CREATE | NLM_F_EXCL));
    nl_addr_put(gw);
    nl_addr_put(dst);
    rtnl_route_put(route);

    rtnl_neigh* neigh = rtnl_neigh_alloc();
    rtnl_neigh_set_ifindex(neigh, ifindex_);
    nl_addr* ip = parse("10.77.200.9", AF_INET);
    nl_addr* mac = parse("02:77:00:00:02:09", AF_LLC);
    NL_OK(rtnl_neigh_set_dst(neigh, ip));
    rtnl_neigh_set_lladdr(neigh, mac);
    rtnl_neigh_set_state(neigh, NUD_PERMANENT);
    NL_OK(rtnl_neigh_add(sk_, neigh, NLM_F_CREATE));
    nl_addr_put(ip);
    nl_addr_put(mac);
    rtnl_neigh_put(neigh);
  }

  nl_sock* sk_ = nullptr;
  int ifindex_ = 0;
  std::string kind_ = "dummy";
};

TEST_F(CollectHostKernelTest, NetworkCollectorReportsLinksAddressesRoutesAndNeighbours) {
  ASSERT_NO_FATAL_FAILURE(setUpNetwork());
  MemorySink sink;
  CollectContext ctx;
  const auto start = Clock::now();
  absl::Status st = makeNetworkCollector()->collect(ctx, sink);
  const auto ms = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
  ASSERT_TRUE(st.ok()) << st.message();
  std::printf("network collector: %.2f ms\n", static_cast<double>(ms.count()) / 1000.0);
  EXPECT_TRUE(sink.warnings.empty()) << sink.warnings.front();

  auto links = sink.of("links.jsonl");
  auto link = find(links, "name", kLink);
  ASSERT_FALSE(link.is_null());
  EXPECT_EQ(link["ifindex"], ifindex_);
  EXPECT_EQ(link["kind"], kind_);
  EXPECT_EQ(link["mtu"], 1400);
  EXPECT_EQ(link["up"], true);
  EXPECT_EQ(link["master"], nullptr);
  EXPECT_EQ(link["mac"].get<std::string>().size(), 17u);
  auto lo = find(links, "name", "lo");
  ASSERT_FALSE(lo.is_null());
  EXPECT_EQ(lo["up"], true);

  auto addrs = sink.of("addresses.jsonl");
  auto v4 = find(addrs, "address", "10.77.200.1");
  ASSERT_FALSE(v4.is_null());
  EXPECT_EQ(v4["ifindex"], ifindex_);
  EXPECT_EQ(v4["name"], kLink);
  EXPECT_EQ(v4["family"], "inet");
  EXPECT_EQ(v4["prefix_len"], 24);
  EXPECT_EQ(v4["scope"], "global");
  auto v6 = find(addrs, "address", "fd77:200::1");
  ASSERT_FALSE(v6.is_null());
  EXPECT_EQ(v6["family"], "inet6");
  EXPECT_EQ(v6["prefix_len"], 64);
  EXPECT_FALSE(find(addrs, "address", "127.0.0.1").is_null());

  auto routes = sink.of("routes.jsonl");
  auto route = find(routes, "dst", "10.77.201.0/24");
  ASSERT_FALSE(route.is_null());
  EXPECT_EQ(route["table"], RT_TABLE_MAIN);
  EXPECT_EQ(route["family"], "inet");
  EXPECT_EQ(route["gateway"], "10.77.200.2");
  EXPECT_EQ(route["dev"], kLink);
  EXPECT_EQ(route["metric"], 77);
  EXPECT_EQ(route["protocol"], "static");  // libnl's default for rtnl_route_add
  EXPECT_EQ(route["scope"], "global");
  auto connected6 = find(routes, "dst", "fd77:200::/64");
  ASSERT_FALSE(connected6.is_null()) << "v6 routes are listed";
  EXPECT_EQ(connected6["protocol"], "kernel");
  bool local_table = false;
  for (const auto& r : routes) local_table |= r["table"] == RT_TABLE_LOCAL;
  EXPECT_TRUE(local_table) << "every table, not only main";

  auto neighs = sink.of("neighbours.jsonl");
  auto n = find(neighs, "address", "10.77.200.9");
  ASSERT_FALSE(n.is_null());
  EXPECT_EQ(n["ifindex"], ifindex_);
  EXPECT_EQ(n["dev"], kLink);
  EXPECT_EQ(n["mac"], "02:77:00:00:02:09");
  EXPECT_EQ(n["state"], "permanent");
}

TEST_F(CollectHostKernelTest, FirewallCollectorWritesTheLiveRulesetAsJson) {
  nft_ctx* nft = nft_ctx_new(NFT_CTX_DEFAULT);
  ASSERT_NE(nft, nullptr);
  nft_ctx_buffer_output(nft);
  nft_ctx_buffer_error(nft);
  const char* kRuleset =
      "table inet bhtest {\n"
      "  chain input {\n"
      "    type filter hook input priority 0; policy accept;\n"
      "    ip saddr 10.77.0.66 tcp dport 22 counter drop\n"
      "  }\n"
      "}\n";
  int rc = nft_run_cmd_from_buffer(nft, kRuleset);
  std::string err = nft_ctx_get_error_buffer(nft);
  nft_ctx_free(nft);
  ASSERT_EQ(rc, 0) << err;

  MemorySink sink;
  CollectContext ctx;
  const auto start = Clock::now();
  absl::Status st = makeFirewallCollector()->collect(ctx, sink);
  const auto ms = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
  ASSERT_TRUE(st.ok()) << st.message();
  std::printf("firewall collector: %.2f ms\n", static_cast<double>(ms.count()) / 1000.0);
  ASSERT_TRUE(sink.files.count("artifacts/nftables.json"));
  auto j = nlohmann::json::parse(sink.files["artifacts/nftables.json"]);
  ASSERT_TRUE(j.contains("nftables"));
  bool table = false, rule = false;
  for (const auto& item : j["nftables"]) {
    if (item.contains("table") && item["table"]["name"] == "bhtest" &&
        item["table"]["family"] == "inet") {
      table = true;
    }
    if (item.contains("rule") && item["rule"]["table"] == "bhtest") {
      rule = item["rule"].dump().find("10.77.0.66") != std::string::npos;
    }
  }
  EXPECT_TRUE(table) << sink.files["artifacts/nftables.json"];
  EXPECT_TRUE(rule) << sink.files["artifacts/nftables.json"];
}

}  // namespace
}  // namespace bulkhead::agent::collect
