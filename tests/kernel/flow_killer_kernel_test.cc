// SockDiagFlowKiller against the real kernel: SOCK_DESTROY of loopback TCP sockets (IPv4 and
// IPv6) and conntrack deletion, inside this process's private network namespace.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "agent/linux/nftables_firewall.h"
#include "agent/linux/sock_diag_flow_killer.h"
#include "tests/kernel/loopback_conns.h"
#include "tests/kernel/private_netns.h"

namespace bulkhead::agent {
namespace {

using test::Conn;
using test::Fd;

std::unique_ptr<SockDiagFlowKiller> makeKiller(SockDiagFlowKiller::Options o = {}) {
  auto k = SockDiagFlowKiller::create(o);
  EXPECT_TRUE(k.ok()) << k.status();
  return k.ok() ? *std::move(k) : nullptr;
}

bool isAbortOrReset(int r) { return r == 0 || r == -ECONNRESET || r == -ECONNABORTED; }

class FlowKillerTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { BULKHEAD_REQUIRE_PRIVATE_NETNS(); }
};

// N connections; cut the client side of every other one; the cut ones fail at both ends,
// the rest still carry data both ways.
TEST_P(FlowKillerTest, CutsChosenSocketsOnly) {
  const int family = GetParam();
  Fd listener = test::listenLoopback(family);
  ASSERT_GE(listener.get(), 0);
  const uint16_t port = test::localPort(listener.get());
  std::string err;
  std::vector<Conn> conns = test::connectMany(family, listener, 10, &err);
  ASSERT_EQ(conns.size(), 10u) << err;

  std::set<uint16_t> chosen;
  for (size_t i = 0; i < conns.size(); i += 2) chosen.insert(conns[i].client_port);

  auto killer = makeKiller();
  ASSERT_NE(killer, nullptr);
  auto report = killer->cut(
      [&](const Flow& f) {
        return f.proto == FlowProto::kTcp && f.remote_port == port &&
               chosen.count(f.local_port) > 0;
      },
      /*dry_run=*/false);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->errors.empty()) << report->errors.front();
  ASSERT_EQ(report->sockets_destroyed.size(), chosen.size());
  for (const Flow& f : report->sockets_destroyed) {
    EXPECT_EQ(f.family, family);
    EXPECT_EQ(f.remote_port, port);
    EXPECT_TRUE(chosen.count(f.local_port)) << describeFlow(f);
  }
  // Kept: the unchosen clients and every server-side socket.
  EXPECT_GE(report->sockets_kept.size(), conns.size() + (conns.size() - chosen.size()));

  for (Conn& c : conns) {
    if (chosen.count(c.client_port)) {
      // Local side: ECONNABORTED (or EOF); peer: RST.
      int rc = test::readWithin(c.client.get(), 2000);
      EXPECT_TRUE(isAbortOrReset(rc)) << "client read " << rc;
      int rs = test::readWithin(c.server.get(), 2000);
      EXPECT_TRUE(isAbortOrReset(rs)) << "server read " << rs;
    } else {
      EXPECT_TRUE(test::exchange(c.client.get(), c.server.get(), "ping"));
      EXPECT_TRUE(test::exchange(c.server.get(), c.client.get(), "pong"));
    }
  }
}

TEST_P(FlowKillerTest, ResolvesOwningProcessBeforeSelecting) {
  const int family = GetParam();
  Fd listener = test::listenLoopback(family);
  ASSERT_GE(listener.get(), 0);
  const uint16_t port = test::localPort(listener.get());
  std::string err;
  std::vector<Conn> conns = test::connectMany(family, listener, 3, &err);
  ASSERT_EQ(conns.size(), 3u) << err;
  SockDiagFlowKiller::Options o;
  o.resolve_owners = true;
  auto killer = makeKiller(o);
  ASSERT_NE(killer, nullptr);
  const uint32_t self = static_cast<uint32_t>(getpid());
  // Select by owner: what kill-sessions needs ("cut the connections of these processes").
  auto report = killer->cut(
      [&](const Flow& f) { return f.owner_pid == self && f.remote_port == port; }, true);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->sockets_destroyed.size(), conns.size());
  for (const Flow& f : report->sockets_destroyed) EXPECT_EQ(f.owner_pid, self);
}

TEST_P(FlowKillerTest, DryRunCutsNothing) {
  const int family = GetParam();
  Fd listener = test::listenLoopback(family);
  ASSERT_GE(listener.get(), 0);
  const uint16_t port = test::localPort(listener.get());
  std::string err;
  std::vector<Conn> conns = test::connectMany(family, listener, 5, &err);
  ASSERT_EQ(conns.size(), 5u) << err;

  auto killer = makeKiller();
  ASSERT_NE(killer, nullptr);
  auto report = killer->cut([&](const Flow& f) { return f.remote_port == port; }, true);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->sockets_destroyed.size(), conns.size());  // would be cut
  for (Conn& c : conns) {
    EXPECT_TRUE(test::exchange(c.client.get(), c.server.get(), "still here"));
  }
}

INSTANTIATE_TEST_SUITE_P(Families, FlowKillerTest, ::testing::Values(AF_INET, AF_INET6),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return p.param == AF_INET ? "IPv4" : "IPv6";
                         });

// The one dump of both families finds exactly what the two per-family dumps find: the sockets
// of 3 IPv4 and 2 IPv6 connections (both ends), with the family the kernel gives each.
TEST(FlowKillerDump, BothFamiliesInOneDumpMatchTheDumpsPerFamily) {
  BULKHEAD_REQUIRE_PRIVATE_NETNS();
  Fd l4 = test::listenLoopback(AF_INET);
  Fd l6 = test::listenLoopback(AF_INET6);
  std::string err;
  auto c4 = test::connectMany(AF_INET, l4, 3, &err);
  ASSERT_EQ(c4.size(), 3u) << err;
  auto c6 = test::connectMany(AF_INET6, l6, 2, &err);
  ASSERT_EQ(c6.size(), 2u) << err;

  auto killer = makeKiller();
  ASSERT_NE(killer, nullptr);
  auto both = killer->dumpTcpBothFamilies();
  ASSERT_TRUE(both.ok()) << both.status();
  auto keys = [](const std::vector<DiagSocket>& v) {
    std::multiset<std::string> out;
    for (const DiagSocket& s : v) out.insert(fmt::format("{} {}", s.family, s.flow.toString()));
    return out;
  };
  std::multiset<std::string> per_family;
  size_t v4 = 0;
  size_t v6 = 0;
  for (int family : {AF_INET, AF_INET6}) {
    auto d = killer->dumpTcp(family);
    ASSERT_TRUE(d.ok()) << d.status();
    for (const DiagSocket& s : *d) (family == AF_INET ? v4 : v6) += s.family == family ? 1 : 0;
    per_family.merge(keys(*d));
  }
  EXPECT_EQ(v4, 6u);  // both ends of each connection; listeners are not in cutStatesMask()
  EXPECT_EQ(v6, 4u);
  EXPECT_EQ(keys(*both), per_family);
}

TEST(FlowKillerMapped, V4MappedSocketIsReportedAsIPv4) {
  BULKHEAD_REQUIRE_PRIVATE_NETNS();
  // A dual-stack listener on :: accepting an IPv4 client: the server socket is AF_INET6 with
  // v4-mapped addresses; the Flow must say AF_INET 127.0.0.1.
  Fd l(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(l.get(), 0);
  int zero = 0;
  setsockopt(l.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  ASSERT_EQ(bind(l.get(), reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);
  ASSERT_EQ(listen(l.get(), 16), 0);
  const uint16_t port = test::localPort(l.get());
  std::string err;
  auto conns = test::connectMany(AF_INET, l, 1, &err);
  ASSERT_EQ(conns.size(), 1u) << err;

  auto killer = makeKiller();
  ASSERT_NE(killer, nullptr);
  // Cut the server side (local port == listener port).
  auto report = killer->cut([&](const Flow& f) { return f.local_port == port; }, false);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->sockets_destroyed.size(), 1u);
  const Flow& f = report->sockets_destroyed[0];
  EXPECT_EQ(f.family, AF_INET);
  EXPECT_EQ(f.remote_addr[0], 127);
  EXPECT_EQ(f.remote_port, conns[0].client_port);
  EXPECT_TRUE(isAbortOrReset(test::readWithin(conns[0].client.get(), 2000)));
}

// --- conntrack ---------------------------------------------------------------------------

// Number of /proc/net/nf_conntrack lines mentioning `needle` (-1 if the file is absent).
int procConntrackLines(const std::string& needle) {
  std::ifstream in("/proc/net/nf_conntrack");
  if (!in) return -1;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

bool sendUdp(int family, uint16_t from_port_hint, uint16_t to_port, Fd* out) {
  (void)from_port_hint;
  Fd s(socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  socklen_t len = test::makeAddr(family, to_port, &ss);
  bool ok = s.get() >= 0 && sendto(s.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&ss), len) == 1;
  *out = std::move(s);
  return ok;
}

class ConntrackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BULKHEAD_REQUIRE_PRIVATE_NETNS();
    auto fw = NftablesFirewall::create();
    ASSERT_TRUE(fw.ok());
    fw_ = *std::move(fw);
    // A conntrack-using rule in another table makes this namespace track connections.
    ASSERT_TRUE(fw_->runRaw("flush ruleset\n"
                            "table inet cttest {\n"
                            "  chain in {\n"
                            "    type filter hook input priority 0; policy accept;\n"
                            "    ct state established,related accept\n"
                            "  }\n"
                            "}\n")
                    .ok());
  }
  void TearDown() override {
    if (fw_) (void)fw_->runRaw("flush ruleset");
  }
  std::unique_ptr<NftablesFirewall> fw_;
};

TEST_F(ConntrackTest, DeletesChosenEntriesV4AndV6) {
  // A UDP receiver per family (no socket to destroy: only conntrack can cut these).
  Fd r4(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  Fd r6(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  socklen_t len = test::makeAddr(AF_INET, 0, &ss);
  ASSERT_EQ(bind(r4.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  len = test::makeAddr(AF_INET6, 0, &ss);
  ASSERT_EQ(bind(r6.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  const uint16_t p4 = test::localPort(r4.get());
  const uint16_t p6 = test::localPort(r6.get());
  Fd s4, s6, s_other;
  ASSERT_TRUE(sendUdp(AF_INET, 0, p4, &s4));
  ASSERT_TRUE(sendUdp(AF_INET6, 0, p6, &s6));
  // A kept flow: UDP to another port.
  Fd r_other(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  len = test::makeAddr(AF_INET, 0, &ss);
  ASSERT_EQ(bind(r_other.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  const uint16_t p_other = test::localPort(r_other.get());
  ASSERT_TRUE(sendUdp(AF_INET, 0, p_other, &s_other));
  // And a TCP connection: both its socket and its conntrack entry go.
  Fd listener = test::listenLoopback(AF_INET);
  const uint16_t pt = test::localPort(listener.get());
  std::string err;
  auto conns = test::connectMany(AF_INET, listener, 1, &err);
  ASSERT_EQ(conns.size(), 1u) << err;

  auto killer = makeKiller();
  ASSERT_NE(killer, nullptr);
  auto table = ConntrackTable::create();
  ASSERT_TRUE(table.ok()) << table.status();
  auto before = (*table)->list();
  ASSERT_TRUE(before.ok()) << before.status();
  auto has = [](const std::vector<Flow>& flows, FlowProto proto, uint16_t port) {
    for (const Flow& f : flows) {
      if (f.proto == proto && f.remote_port == port && !f.forwarded) return true;
    }
    return false;
  };
  ASSERT_TRUE(has(*before, FlowProto::kUdp, p4));
  ASSERT_TRUE(has(*before, FlowProto::kUdp, p6));
  ASSERT_TRUE(has(*before, FlowProto::kUdp, p_other));
  ASSERT_TRUE(has(*before, FlowProto::kTcp, pt));
  const std::string dport4 = "dport=" + std::to_string(p4) + " ";
  EXPECT_EQ(procConntrackLines(dport4), 1);

  auto pick = [&](const Flow& f) {
    return (f.proto == FlowProto::kUdp && (f.remote_port == p4 || f.remote_port == p6)) ||
           (f.proto == FlowProto::kTcp && f.remote_port == pt);
  };
  // Dry run first: lists, deletes nothing.
  auto dry = killer->cut(pick, true);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_EQ(dry->conntrack_deleted.size(), 3u);
  EXPECT_TRUE(has(*(*table)->list(), FlowProto::kUdp, p4));

  auto report = killer->cut(pick, false);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->errors.empty()) << report->errors.front();
  EXPECT_EQ(report->conntrack_deleted.size(), 3u);
  EXPECT_EQ(report->sockets_destroyed.size(), 1u);  // the TCP client socket

  auto after = (*table)->list();
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(has(*after, FlowProto::kUdp, p4));
  EXPECT_FALSE(has(*after, FlowProto::kUdp, p6));
  EXPECT_TRUE(has(*after, FlowProto::kUdp, p_other));  // kept
  EXPECT_EQ(procConntrackLines(dport4), 0);
}

// More entries than one batch of delete requests, some of which expire (here: another socket
// deletes them) between the dump and the delete: those are skipped silently, the rest deleted
// and reported, whichever batch they fall in.
TEST_F(ConntrackTest, DeletesEntriesInBatchesAndSkipsTheOnesAlreadyGone) {
  Fd receiver(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  socklen_t len = test::makeAddr(AF_INET, 0, &ss);
  ASSERT_EQ(bind(receiver.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  const uint16_t port = test::localPort(receiver.get());
  constexpr size_t kEntries = 300;  // more than two batches
  std::vector<Fd> senders(kEntries);
  for (Fd& s : senders) ASSERT_TRUE(sendUdp(AF_INET, 0, port, &s));
  const std::string needle = "dport=" + std::to_string(port) + " ";
  ASSERT_EQ(procConntrackLines(needle), static_cast<int>(kEntries));

  auto table = ConntrackTable::create();
  ASSERT_TRUE(table.ok()) << table.status();
  auto other = ConntrackTable::create();
  ASSERT_TRUE(other.ok()) << other.status();
  auto to_port = [&](const Flow& f) { return f.proto == FlowProto::kUdp && f.remote_port == port; };
  CutReport gone_first;
  bool first = true;
  CutReport report;
  // The selector runs after the dump: on its first call, the entries from odd source ports
  // are deleted through the other socket.
  ASSERT_TRUE(
      (*table)
          ->cut(
              [&](const Flow& f) {
                if (first) {
                  first = false;
                  EXPECT_TRUE(
                      (*other)
                          ->cut([&](const Flow& g) { return to_port(g) && g.local_port % 2 == 1; },
                                false, &gone_first)
                          .ok());
                }
                return to_port(f);
              },
              false, &report)
          .ok());
  ASSERT_TRUE(gone_first.errors.empty()) << gone_first.errors.front();
  EXPECT_GT(gone_first.conntrack_deleted.size(), 0u);
  EXPECT_TRUE(report.errors.empty()) << report.errors.front();
  EXPECT_EQ(report.conntrack_deleted.size() + gone_first.conntrack_deleted.size(), kEntries);
  for (const Flow& f : report.conntrack_deleted) EXPECT_EQ(f.local_port % 2, 0) << f.toString();
  EXPECT_EQ(procConntrackLines(needle), 0);
  // The socket still answers a dump after the batches (its sequence numbers stayed in step).
  auto after = (*table)->list();
  EXPECT_TRUE(after.ok()) << after.status();
}

TEST(ConntrackEmpty, NamespaceWithoutTrackingIsNotAnError) {
  BULKHEAD_REQUIRE_PRIVATE_NETNS();
  auto fw = NftablesFirewall::create();
  ASSERT_TRUE(fw.ok());
  ASSERT_TRUE((*fw)->runRaw("flush ruleset").ok());
  auto killer = makeKiller();
  ASSERT_NE(killer, nullptr);
  auto report = killer->cut([](const Flow&) { return true; }, true);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->errors.empty()) << report->errors.front();
}

}  // namespace
}  // namespace bulkhead::agent
