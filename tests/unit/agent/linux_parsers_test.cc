// Pure parts of agent/linux, fed with hand-built kernel messages: no root, no sockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "agent/linux/conntrack.h"
#include "agent/linux/nftables_firewall.h"
#include "agent/linux/proc_files.h"
#include "agent/linux/ruleset_hash.h"
#include "agent/linux/sock_diag.h"
#include "agent/linux/sock_diag_flow_killer.h"
#include "agent/linux/tamper_watch.h"

namespace bulkhead::agent {
namespace {

// --- byte builders ------------------------------------------------------------------------

void appendRaw(std::vector<uint8_t>* b, const void* p, size_t n) {
  if (n == 0) return;
  const size_t old = b->size();
  b->resize(old + n);
  std::memcpy(b->data() + old, p, n);
}

void pad(std::vector<uint8_t>* b) {
  while (b->size() % 4) b->push_back(0);
}

// Appends a netlink message with `payload`; returns its offset.
size_t appendMsg(std::vector<uint8_t>* b, uint16_t type, const std::vector<uint8_t>& payload,
                 uint32_t seq = 1) {
  size_t off = b->size();
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(NLMSG_HDRLEN + payload.size());
  h.nlmsg_type = type;
  h.nlmsg_seq = seq;
  appendRaw(b, &h, sizeof(h));
  appendRaw(b, payload.data(), payload.size());
  pad(b);
  return off;
}

std::array<uint8_t, 16> v4(const char* s) {
  std::array<uint8_t, 16> a{};
  inet_pton(AF_INET, s, a.data());
  return a;
}

std::array<uint8_t, 16> v6(const char* s) {
  std::array<uint8_t, 16> a{};
  inet_pton(AF_INET6, s, a.data());
  return a;
}

std::vector<uint8_t> diagMsg(uint8_t family, const char* src, uint16_t sport, const char* dst,
                             uint16_t dport, uint32_t cookie) {
  inet_diag_msg m{};
  m.idiag_family = family;
  m.idiag_state = 1;  // ESTABLISHED
  m.id.idiag_sport = htons(sport);
  m.id.idiag_dport = htons(dport);
  inet_pton(family, src, m.id.idiag_src);
  inet_pton(family, dst, m.id.idiag_dst);
  m.id.idiag_cookie[0] = cookie;
  m.idiag_uid = 1000;
  m.idiag_inode = 4242;
  std::vector<uint8_t> p;
  appendRaw(&p, &m, sizeof(m));
  return p;
}

std::vector<uint8_t> intPayload(int v) {
  std::vector<uint8_t> p;
  appendRaw(&p, &v, sizeof(v));
  return p;
}

// --- sock_diag ----------------------------------------------------------------------------

TEST(SockDiagParse, DumpOfV4V6AndMappedSockets) {
  std::vector<uint8_t> b;
  appendMsg(&b, SOCK_DIAG_BY_FAMILY, diagMsg(AF_INET, "10.77.0.11", 22, "10.77.0.66", 51234, 7));
  appendMsg(&b, SOCK_DIAG_BY_FAMILY, diagMsg(AF_INET6, "fd77::11", 443, "fd77::66", 40000, 8));
  appendMsg(&b, SOCK_DIAG_BY_FAMILY,
            diagMsg(AF_INET6, "::ffff:10.77.0.11", 80, "::ffff:10.77.0.70", 41000, 9));
  std::vector<DiagSocket> out;
  bool done = false;
  ASSERT_TRUE(parseInetDiagDump(b.data(), b.size(), &out, &done).ok());
  EXPECT_FALSE(done);
  ASSERT_EQ(out.size(), 3u);

  EXPECT_EQ(out[0].flow.family, AF_INET);
  EXPECT_EQ(out[0].flow.local_addr, v4("10.77.0.11"));
  EXPECT_EQ(out[0].flow.remote_addr, v4("10.77.0.66"));
  EXPECT_EQ(out[0].flow.local_port, 22);
  EXPECT_EQ(out[0].flow.remote_port, 51234);
  EXPECT_EQ(out[0].id.idiag_cookie[0], 7u);
  EXPECT_EQ(out[0].inode, 4242u);
  EXPECT_EQ(describeFlow(out[0].flow), "tcp 10.77.0.11:22 <- 10.77.0.66:51234");

  EXPECT_EQ(out[1].flow.family, AF_INET6);
  EXPECT_EQ(out[1].flow.remote_addr, v6("fd77::66"));
  EXPECT_EQ(describeFlow(out[1].flow), "tcp [fd77::11]:443 <- [fd77::66]:40000");

  // IPv4-mapped: presented as IPv4, but destroyed with the family the kernel reported.
  EXPECT_EQ(out[2].flow.family, AF_INET);
  EXPECT_EQ(out[2].family, AF_INET6);
  EXPECT_EQ(out[2].flow.remote_addr, v4("10.77.0.70"));
  EXPECT_EQ(out[2].flow.local_addr, v4("10.77.0.11"));

  std::vector<uint8_t> d;
  appendMsg(&d, NLMSG_DONE, intPayload(0));
  ASSERT_TRUE(parseInetDiagDump(d.data(), d.size(), &out, &done).ok());
  EXPECT_TRUE(done);
}

// The answers to the dump of both families (tcpBothFamiliesDumpRequest) come as
// TCPDIAG_GETSOCK messages, mixed families; other message types are still skipped.
TEST(SockDiagParse, LegacyTcpDumpAnswersOfBothFamilies) {
  std::vector<uint8_t> b;
  appendMsg(&b, TCPDIAG_GETSOCK, diagMsg(AF_INET6, "fd77::11", 443, "fd77::66", 40000, 8));
  appendMsg(&b, NLMSG_NOOP, intPayload(0));
  appendMsg(&b, TCPDIAG_GETSOCK, diagMsg(AF_INET, "10.77.0.11", 22, "10.77.0.66", 51234, 7));
  std::vector<DiagSocket> out;
  bool done = false;
  ASSERT_TRUE(parseInetDiagDump(b.data(), b.size(), &out, &done).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(describeFlow(out[0].flow), "tcp [fd77::11]:443 <- [fd77::66]:40000");
  EXPECT_EQ(describeFlow(out[1].flow), "tcp 10.77.0.11:22 <- 10.77.0.66:51234");

  auto req = tcpBothFamiliesDumpRequest(5, 1u << 1);
  EXPECT_EQ(req.h.nlmsg_type, TCPDIAG_GETSOCK);
  EXPECT_EQ(req.h.nlmsg_len, sizeof req);
  EXPECT_EQ(req.h.nlmsg_flags, NLM_F_REQUEST | NLM_F_DUMP);
  EXPECT_EQ(req.r.idiag_states, 1u << 1);
}

TEST(SockDiagParse, ErrorsAndTruncation) {
  std::vector<DiagSocket> out;
  bool done = false;
  std::vector<uint8_t> e;
  appendMsg(&e, NLMSG_ERROR, intPayload(-EPERM));
  EXPECT_FALSE(parseInetDiagDump(e.data(), e.size(), &out, &done).ok());
  // Any int from the wire, INT_MIN too (negating it overflowed; found by fuzz/sock_diag_fuzz).
  std::vector<uint8_t> min;
  appendMsg(&min, NLMSG_ERROR, intPayload(std::numeric_limits<int>::min()));
  EXPECT_FALSE(parseInetDiagDump(min.data(), min.size(), &out, &done).ok());

  std::vector<uint8_t> t;
  appendMsg(&t, SOCK_DIAG_BY_FAMILY, diagMsg(AF_INET, "10.0.0.1", 1, "10.0.0.2", 2, 1));
  EXPECT_FALSE(parseInetDiagDump(t.data(), t.size() - 8, &out, &done).ok());  // cut short

  std::vector<uint8_t> s;
  appendMsg(&s, SOCK_DIAG_BY_FAMILY, std::vector<uint8_t>(10, 0));  // short payload
  EXPECT_FALSE(parseInetDiagDump(s.data(), s.size(), &out, &done).ok());

  std::vector<uint8_t> bad_done;
  appendMsg(&bad_done, NLMSG_DONE, intPayload(-EINTR));
  EXPECT_FALSE(parseInetDiagDump(bad_done.data(), bad_done.size(), &out, &done).ok());
  EXPECT_TRUE(out.empty());
}

TEST(SockDiagParse, AcksAndDestroyRequest) {
  std::vector<uint8_t> b;
  appendMsg(&b, NLMSG_ERROR, intPayload(0), 100);
  appendMsg(&b, NLMSG_ERROR, intPayload(-ENOENT), 101);
  std::vector<NetlinkAck> acks;
  ASSERT_TRUE(parseNetlinkAcks(b.data(), b.size(), &acks).ok());
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks[0].seq, 100u);
  EXPECT_EQ(acks[0].error, 0);
  EXPECT_EQ(acks[1].error, -ENOENT);

  std::vector<uint8_t> dump;
  appendMsg(&dump, SOCK_DIAG_BY_FAMILY, diagMsg(AF_INET6, "fd77::1", 5, "fd77::2", 6, 77));
  std::vector<DiagSocket> socks;
  bool done = false;
  ASSERT_TRUE(parseInetDiagDump(dump.data(), dump.size(), &socks, &done).ok());
  std::vector<uint8_t> req;
  appendDestroyRequest(socks[0], 555, &req);
  appendDestroyRequest(socks[0], 556, &req);
  ASSERT_EQ(req.size(), 2 * (sizeof(nlmsghdr) + sizeof(inet_diag_req_v2)));
  nlmsghdr h;
  std::memcpy(&h, req.data(), sizeof(h));
  EXPECT_EQ(h.nlmsg_type, SOCK_DESTROY);
  EXPECT_EQ(h.nlmsg_seq, 555u);
  EXPECT_EQ(h.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  inet_diag_req_v2 r;
  std::memcpy(&r, req.data() + sizeof(h), sizeof(r));
  EXPECT_EQ(r.sdiag_family, AF_INET6);
  EXPECT_EQ(r.sdiag_protocol, IPPROTO_TCP);
  EXPECT_EQ(r.id.idiag_cookie[0], 77u);
  EXPECT_EQ(std::memcmp(&r.id, &socks[0].id, sizeof(r.id)), 0);
}

TEST(SockDiagParse, SocketInodeFromFdLink) {
  EXPECT_EQ(proc::socketInodeFromLink("socket:[12345]"), 12345u);
  EXPECT_EQ(proc::socketInodeFromLink("socket:[]"), 0u);
  EXPECT_EQ(proc::socketInodeFromLink("socket:[12a]"), 0u);
  EXPECT_EQ(proc::socketInodeFromLink("pipe:[12345]"), 0u);
  EXPECT_EQ(proc::socketInodeFromLink("/dev/null"), 0u);
}

TEST(SockDiagParse, StatesMaskSkipsListenTimeWaitClose) {
  const uint32_t m = cutStatesMask();
  EXPECT_TRUE(m & (1u << 1));    // ESTABLISHED
  EXPECT_TRUE(m & (1u << 2));    // SYN_SENT
  EXPECT_TRUE(m & (1u << 8));    // CLOSE_WAIT
  EXPECT_FALSE(m & (1u << 10));  // LISTEN
  EXPECT_FALSE(m & (1u << 6));   // TIME_WAIT
  EXPECT_FALSE(m & (1u << 7));   // CLOSE
}

// --- conntrack ----------------------------------------------------------------------------

CtTuple tuple(std::array<uint8_t, 16> src, uint16_t sport, std::array<uint8_t, 16> dst,
              uint16_t dport) {
  CtTuple t;
  t.src = src;
  t.dst = dst;
  t.sport = sport;
  t.dport = dport;
  return t;
}

class ConntrackFlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    local_.add(AF_INET, v4("10.77.0.11"));
    local_.add(AF_INET6, v6("fd77::11"));
  }
  LocalAddresses local_;
};

TEST_F(ConntrackFlowTest, InboundToThisHost) {
  Flow f =
      flowFromConntrack(AF_INET, IPPROTO_TCP, tuple(v4("10.77.0.66"), 5000, v4("10.77.0.11"), 22),
                        tuple(v4("10.77.0.11"), 22, v4("10.77.0.66"), 5000), local_);
  EXPECT_FALSE(f.forwarded);
  EXPECT_EQ(f.proto, FlowProto::kTcp);
  EXPECT_EQ(f.local_addr, v4("10.77.0.11"));
  EXPECT_EQ(f.local_port, 22);
  EXPECT_EQ(f.remote_addr, v4("10.77.0.66"));
  EXPECT_EQ(f.remote_port, 5000);
}

TEST_F(ConntrackFlowTest, OutboundFromThisHostV6) {
  Flow f = flowFromConntrack(AF_INET6, IPPROTO_UDP, tuple(v6("fd77::11"), 4000, v6("fd77::53"), 53),
                             tuple(v6("fd77::53"), 53, v6("fd77::11"), 4000), local_);
  EXPECT_FALSE(f.forwarded);
  EXPECT_EQ(f.proto, FlowProto::kUdp);
  EXPECT_EQ(f.local_port, 4000);
  EXPECT_EQ(f.remote_addr, v6("fd77::53"));
  EXPECT_EQ(f.remote_port, 53);
}

TEST_F(ConntrackFlowTest, LoopbackIsLocalWithoutInterfaceList) {
  LocalAddresses none;
  Flow f =
      flowFromConntrack(AF_INET, IPPROTO_TCP, tuple(v4("127.0.0.1"), 40000, v4("127.0.0.1"), 80),
                        tuple(v4("127.0.0.1"), 80, v4("127.0.0.1"), 40000), none);
  EXPECT_FALSE(f.forwarded);
  EXPECT_EQ(f.remote_port, 80);
}

TEST_F(ConntrackFlowTest, RoutedAndNattedAreForwarded) {
  // Routed through: no end is local.
  Flow routed =
      flowFromConntrack(AF_INET, IPPROTO_TCP, tuple(v4("10.77.5.5"), 1234, v4("10.77.6.6"), 22),
                        tuple(v4("10.77.6.6"), 22, v4("10.77.5.5"), 1234), local_);
  EXPECT_TRUE(routed.forwarded);
  EXPECT_EQ(routed.local_addr, v4("10.77.5.5"));  // initiator by convention
  EXPECT_EQ(routed.remote_addr, v4("10.77.6.6"));
  // DNAT to a container: arrives for this host's address, answered by the container.
  Flow dnat =
      flowFromConntrack(AF_INET, IPPROTO_TCP, tuple(v4("10.77.0.66"), 1234, v4("10.77.0.11"), 8080),
                        tuple(v4("172.17.0.2"), 80, v4("10.77.0.66"), 1234), local_);
  EXPECT_TRUE(dnat.forwarded);
  // SNAT/masquerade of a container's outbound connection.
  Flow snat =
      flowFromConntrack(AF_INET, IPPROTO_TCP, tuple(v4("172.17.0.2"), 1234, v4("10.77.0.99"), 443),
                        tuple(v4("10.77.0.99"), 443, v4("10.77.0.11"), 61000), local_);
  EXPECT_TRUE(snat.forwarded);
}

TEST(Conntrack, PortsOnlyForPortProtocols) {
  EXPECT_TRUE(protoHasPorts(IPPROTO_TCP));
  EXPECT_TRUE(protoHasPorts(IPPROTO_UDP));
  EXPECT_TRUE(protoHasPorts(IPPROTO_SCTP));
  EXPECT_FALSE(protoHasPorts(IPPROTO_ICMP));
  EXPECT_FALSE(protoHasPorts(IPPROTO_ICMPV6));
  EXPECT_FALSE(protoHasPorts(IPPROTO_GRE));
}

// --- nf_tables events ---------------------------------------------------------------------

void appendAttr(std::vector<uint8_t>* p, uint16_t type, const void* data, size_t n) {
  nlattr a{};
  a.nla_len = static_cast<uint16_t>(NLA_HDRLEN + n);
  a.nla_type = type;
  appendRaw(p, &a, sizeof(a));
  appendRaw(p, data, n);
  pad(p);
}

void appendNftMsg(std::vector<uint8_t>* b, uint16_t msg, uint8_t family, const char* table) {
  std::vector<uint8_t> p;
  nfgenmsg g{};
  g.nfgen_family = family;
  appendRaw(&p, &g, sizeof(g));
  if (table) appendAttr(&p, 1, table, std::strlen(table) + 1);
  appendMsg(b, static_cast<uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | msg), p);
}

void appendGen(std::vector<uint8_t>* b, uint32_t id, uint32_t pid, const char* name) {
  std::vector<uint8_t> p;
  nfgenmsg g{};
  appendRaw(&p, &g, sizeof(g));
  uint32_t be = htonl(id);
  appendAttr(&p, NFTA_GEN_ID, &be, 4);
  be = htonl(pid);
  appendAttr(&p, NFTA_GEN_PROC_PID, &be, 4);
  appendAttr(&p, NFTA_GEN_PROC_NAME, name, std::strlen(name) + 1);
  appendMsg(b, static_cast<uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN), p);
}

TEST(NftEvents, ParseFlushRulesetBatch) {
  std::vector<uint8_t> b;
  appendNftMsg(&b, NFT_MSG_DELRULE, NFPROTO_INET, "bulkhead");
  appendNftMsg(&b, NFT_MSG_DELCHAIN, NFPROTO_INET, "bulkhead");
  appendNftMsg(&b, NFT_MSG_DELTABLE, NFPROTO_INET, "bulkhead");
  appendNftMsg(&b, NFT_MSG_DELTABLE, NFPROTO_IPV4, "filter");
  appendGen(&b, 42, 4242, "nft");
  std::vector<NftEvent> ev;
  ASSERT_TRUE(parseNftEvents(b.data(), b.size(), &ev).ok());
  ASSERT_EQ(ev.size(), 5u);
  EXPECT_EQ(ev[2].msg_type, NFT_MSG_DELTABLE);
  EXPECT_EQ(ev[2].family, NFPROTO_INET);
  EXPECT_EQ(ev[2].table, "bulkhead");
  EXPECT_EQ(ev[4].gen_id, 42u);
  EXPECT_EQ(ev[4].pid, 4242u);
  EXPECT_EQ(ev[4].proc_name, "nft");

  TamperAggregator agg(NFPROTO_INET, "bulkhead");
  int relevant = 0;
  for (const auto& e : ev) relevant += agg.add(e) ? 1 : 0;
  EXPECT_EQ(relevant, 4);  // 3 about our table + the NEWGEN closing that transaction
  ASSERT_TRUE(agg.pending());
  TamperEvent t = agg.take();
  EXPECT_EQ(t.messages, 3u);
  EXPECT_EQ(t.kinds, (std::vector<std::string>{"DELRULE", "DELCHAIN", "DELTABLE"}));
  EXPECT_EQ(t.actors, (std::vector<std::string>{"nft (pid 4242)"}));
  EXPECT_FALSE(agg.pending());
}

TEST(NftEvents, OtherTablesAndFamiliesAreIgnored) {
  std::vector<uint8_t> b;
  appendNftMsg(&b, NFT_MSG_NEWRULE, NFPROTO_INET, "docker");
  appendNftMsg(&b, NFT_MSG_NEWTABLE, NFPROTO_IPV4, "bulkhead");  // ip, not inet
  appendGen(&b, 43, 1, "dockerd");
  std::vector<NftEvent> ev;
  ASSERT_TRUE(parseNftEvents(b.data(), b.size(), &ev).ok());
  TamperAggregator agg(NFPROTO_INET, "bulkhead");
  for (const auto& e : ev) EXPECT_FALSE(agg.add(e)) << nftMessageName(e.msg_type);
  EXPECT_FALSE(agg.pending());
}

TEST(NftEvents, MalformedIsAnErrorAndOtherSubsystemsSkipped) {
  std::vector<uint8_t> b;
  appendNftMsg(&b, NFT_MSG_DELTABLE, NFPROTO_INET, "bulkhead");
  std::vector<NftEvent> ev;
  EXPECT_FALSE(parseNftEvents(b.data(), b.size() - 4, &ev).ok());
  std::vector<uint8_t> ct;
  appendMsg(&ct, static_cast<uint16_t>(NFNL_SUBSYS_CTNETLINK << 8), std::vector<uint8_t>(4, 0));
  ev.clear();
  ASSERT_TRUE(parseNftEvents(ct.data(), ct.size(), &ev).ok());
  EXPECT_TRUE(ev.empty());
  EXPECT_EQ(nftMessageName(NFT_MSG_DELSETELEM), "DELSETELEM");
  EXPECT_EQ(nftMessageName(200), "MSG_200");
}

// --- hashing and batches ------------------------------------------------------------------

TEST(RulesetHash, Sha256Hex) {
  EXPECT_EQ(rulesetHash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(rulesetHash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ReplacementBatch, PrefixAddedOnce) {
  const std::string body = "table inet bulkhead {\n}\n";
  const std::string once = replacementBatch(body);
  EXPECT_EQ(once,
            "add table inet bulkhead\ndelete table inet bulkhead\ntable inet bulkhead {\n}\n");
  EXPECT_EQ(replacementBatch(once), once);
  EXPECT_EQ(replacementBatch("table inet bulkhead {\n}"), once);  // newline completed
}

}  // namespace
}  // namespace bulkhead::agent
