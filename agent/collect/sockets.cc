// sockets.jsonl: every TCP, UDP and raw socket (IPv4 and IPv6), UNIX socket and packet socket
// of the agent's network namespace, from NETLINK_SOCK_DIAG dumps (inet_diag, unix_diag,
// packet_diag), with the pids and comms holding each one, found among the "socket:[INODE]"
// links of the capture's one walk of <proc_root>/*/fd (fd_table.h, shared with open_files).
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/packet_diag.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netlink/attr.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "agent/collect/collectors.h"
#include "agent/collect/fd_table.h"
#include "agent/collect/sock_diag_records.h"
#include "agent/linux/fd_walk.h"
#include "agent/linux/proc_files.h"
#include "agent/linux/sock_diag.h"
#include "agent/linux/sock_diag_flow_killer.h"
#include "common/format.h"

namespace bulkhead::agent::collect {
namespace {

using nlohmann::json;

constexpr std::chrono::milliseconds kRecvTimeout{3000};  // per recv: the kernel answers at once

// TCP state names (linux/tcp_states.h numbering), lower case as `ss` prints them.
const char* tcpStateName(uint8_t state) {
  static constexpr const char* kNames[] = {
      "unknown", "established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2",  "time-wait",
      "close",   "close-wait",  "last-ack", "listen",   "closing",    "new-syn-recv"};
  return state < std::size(kNames) ? kNames[state] : "unknown";
}

// Connectionless sockets (UDP, raw, UNIX) reuse the TCP numbers: CLOSE means unconnected.
const char* datagramStateName(uint8_t state) {
  return state == 7 /* TCP_CLOSE */ ? "unconnected" : tcpStateName(state);
}

const char* inetFamilyName(uint8_t family) { return family == AF_INET ? "inet" : "inet6"; }

const char* inetProtocolName(uint8_t protocol) {
  return protocol == IPPROTO_TCP ? "tcp" : protocol == IPPROTO_UDP ? "udp" : "raw";
}

const char* unixTypeName(uint8_t type) {
  switch (type) {
    case SOCK_STREAM: return "stream";
    case SOCK_DGRAM: return "dgram";
    case SOCK_SEQPACKET: return "seqpacket";
    default: return "unknown";
  }
}

std::string addressText(uint8_t family, const __be32* words) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, words, buf, sizeof buf);
  return buf;
}

// Netlink attributes after a fixed-size header in a sock_diag message.
template <typename F>
void forEachAttr(const uint8_t* payload, size_t plen, size_t header, F&& each) {
  if (plen <= NLMSG_ALIGN(header)) return;
  auto* head = reinterpret_cast<nlattr*>(const_cast<uint8_t*>(payload) + NLMSG_ALIGN(header));
  nlattr* a = nullptr;
  int rem = 0;
  nla_for_each_attr(a, head, static_cast<int>(plen - NLMSG_ALIGN(header)), rem) { each(a); }
}

}  // namespace

absl::Status parseUnixDiagDatagram(const uint8_t* data, size_t len, std::vector<SocketRecord>* out,
                                   bool* done) {
  auto each = [&](const uint8_t* payload, size_t plen) {
    if (plen < sizeof(unix_diag_msg)) return absl::OkStatus();  // skipped
    unix_diag_msg m;
    std::memcpy(&m, payload, sizeof m);
    json r;
    r["family"] = "unix";
    r["protocol"] = unixTypeName(m.udiag_type);
    r["state"] = datagramStateName(m.udiag_state);
    r["inode"] = m.udiag_ino;
    r["path"] = nullptr;
    r["uid"] = nullptr;
    forEachAttr(payload, plen, sizeof m, [&](const nlattr* a) {
      const auto* bytes = static_cast<const char*>(nla_data(a));
      const size_t n = static_cast<size_t>(nla_len(a));
      if (nla_type(a) == UNIX_DIAG_NAME && n > 0) {
        // Abstract names start with NUL; shown as "@name" the way ss does.
        std::string name = bytes[0] == '\0' ? "@" + std::string(bytes + 1, n - 1)
                                            : std::string(bytes, strnlen(bytes, n));
        r["path"] = proc::utf8(name);
      } else if (nla_type(a) == UNIX_DIAG_PEER && n >= sizeof(uint32_t)) {
        r["peer_inode"] = nla_get_u32(const_cast<nlattr*>(a));
      } else if (nla_type(a) == UNIX_DIAG_UID && n >= sizeof(uint32_t)) {
        r["uid"] = nla_get_u32(const_cast<nlattr*>(a));
      }
    });
    out->push_back(SocketRecord{std::move(r), m.udiag_ino});
    return absl::OkStatus();
  };
  return walkSockDiagDatagram(data, len, each, done);
}

absl::Status parsePacketDiagDatagram(const uint8_t* data, size_t len,
                                     std::vector<SocketRecord>* out, bool* done) {
  auto each = [&](const uint8_t* payload, size_t plen) {
    if (plen < sizeof(packet_diag_msg)) return absl::OkStatus();  // skipped
    packet_diag_msg m;
    std::memcpy(&m, payload, sizeof m);
    json r;
    r["family"] = "packet";
    r["protocol"] = "packet";
    r["inode"] = m.pdiag_ino;
    r["packet_protocol"] = m.pdiag_num;  // ethertype, host order (ETH_P_ALL = 3)
    r["ifindex"] = nullptr;
    r["uid"] = nullptr;
    forEachAttr(payload, plen, sizeof m, [&](const nlattr* a) {
      const size_t n = static_cast<size_t>(nla_len(a));
      if (nla_type(a) == PACKET_DIAG_INFO && n >= sizeof(packet_diag_info)) {
        packet_diag_info info;
        std::memcpy(&info, nla_data(a), sizeof info);
        r["ifindex"] = info.pdi_index;  // 0: bound to every interface
      } else if (nla_type(a) == PACKET_DIAG_UID && n >= sizeof(uint32_t)) {
        r["uid"] = nla_get_u32(const_cast<nlattr*>(a));
      }
    });
    out->push_back(SocketRecord{std::move(r), m.pdiag_ino});
    return absl::OkStatus();
  };
  return walkSockDiagDatagram(data, len, each, done);
}

namespace {

class SocketScan {
 public:
  SocketScan(const CollectContext& ctx, ArtifactSink& sink) : ctx_(ctx), sink_(sink) {}

  absl::Status run() {
    if (absl::Status s = openSocket(); !s.ok()) return s;
    int dumped = 0;
    bool raw_diag = true;  // kernels without raw_diag refuse both families: warn once
    for (uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
      for (uint8_t protocol : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}, uint8_t{IPPROTO_RAW}}) {
        if (sink_.stopped()) return absl::OkStatus();
        if (protocol == IPPROTO_RAW && !raw_diag) continue;
        bool ok = dumpInet(family, protocol);
        dumped += ok ? 1 : 0;
        if (protocol == IPPROTO_RAW && !ok) raw_diag = false;
      }
    }
    if (sink_.stopped()) return absl::OkStatus();
    dumped += dumpUnix() ? 1 : 0;
    if (sink_.stopped()) return absl::OkStatus();
    dumped += dumpPacket() ? 1 : 0;
    if (dumped == 0) return absl::UnavailableError("no sock_diag dump succeeded (see warnings)");
    findOwners();
    // Inet sockets first (dumped first), their records built one at a time as they are written.
    for (const InetRow& row : inet_rows_) {
      if (sink_.stopped()) return absl::OkStatus();
      json record = inetRecord(row);
      addOwners(row.socket.inode, &record);
      if (!sink_.record("sockets.jsonl", record)) return absl::OkStatus();
    }
    for (auto& row : rows_) {
      if (sink_.stopped()) return absl::OkStatus();
      addOwners(row.inode, &row.record);
      if (!sink_.record("sockets.jsonl", row.record)) return absl::OkStatus();
    }
    return absl::OkStatus();
  }

 private:
  using Row = SocketRecord;

  // An inet socket as dumped: a host may hold hundreds of thousands, so its record is built
  // only when written (not kept as a JSON object per socket meanwhile).
  struct InetRow {
    DiagSocket socket;
    uint8_t family = 0;    // of the dump: AF_INET, AF_INET6
    uint8_t protocol = 0;  // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_RAW
  };

  static json inetRecord(const InetRow& row) {
    const DiagSocket& s = row.socket;
    json r;
    r["family"] = inetFamilyName(row.family);
    r["protocol"] = inetProtocolName(row.protocol);
    r["state"] = row.protocol == IPPROTO_TCP ? tcpStateName(s.state) : datagramStateName(s.state);
    r["local_address"] = addressText(s.family, s.id.idiag_src);
    r["local_port"] = ntohs(s.id.idiag_sport);
    r["remote_address"] = addressText(s.family, s.id.idiag_dst);
    r["remote_port"] = ntohs(s.id.idiag_dport);
    r["inode"] = s.inode;
    r["uid"] = s.uid;
    return r;
  }

  // "pids" and "comms" of the socket `inode`: its owners in pid order (none if unknown).
  void addOwners(uint64_t inode, json* record) {
    json pids = json::array();
    json comms = json::array();
    if (auto it = owners_.find(inode); inode != 0 && it != owners_.end()) {
      std::sort(it->second.begin(), it->second.end());
      it->second.erase(std::unique(it->second.begin(), it->second.end()), it->second.end());
      for (int pid : it->second) {
        pids.push_back(pid);
        comms.push_back(comms_[pid]);
      }
    }
    (*record)["pids"] = std::move(pids);
    (*record)["comms"] = std::move(comms);
  }

  // Sends one dump request and feeds every answer datagram to `on_datagram` until it sets
  // *done. False (with a warning naming `what`, unless stopped) when the dump failed; the
  // socket is then replaced, so that its leftovers never reach the next dump.
  bool dump(const void* req, size_t len, const std::string& what,
            absl::FunctionRef<absl::Status(const uint8_t*, size_t, bool*)> on_datagram) {
    absl::Status s =
        diag_->dump(req, len, kRecvTimeout, on_datagram, [this] { return sink_.stopped(); });
    if (s.ok()) return true;
    if (!sink_.stopped()) sink_.warn(fmt::format("{} not dumped: {}", what, s));
    if (absl::Status reopened = openSocket(); !reopened.ok()) {
      sink_.warn(fmt::format("sock_diag socket not reopened: {}", reopened));
    }
    return false;
  }

  absl::Status openSocket() {
    auto diag = SockDiagSocket::open(4 << 20);
    if (!diag.ok()) return diag.status();
    diag_ = *std::move(diag);
    return absl::OkStatus();
  }

  bool dumpInet(uint8_t family, uint8_t protocol) {
    auto req = sockDiagDumpRequest<inet_diag_req_raw>(diag_->nextSeq(), family);
    req.r.sdiag_protocol = protocol;
    req.r.sdiag_raw_protocol = protocol == IPPROTO_RAW ? IPPROTO_RAW : 0;  // raw: every protocol
    req.r.idiag_states = ~0u;
    std::vector<DiagSocket> found;
    bool ok =
        dump(&req, sizeof req,
             fmt::format("{} {} sockets{}", inetFamilyName(family), inetProtocolName(protocol),
                         protocol == IPPROTO_RAW ? " (needs raw_diag)" : ""),
             [&](const uint8_t* data, size_t n, bool* done) {
               return parseInetDiagDump(data, n, &found, done);
             });
    for (const DiagSocket& s : found) inet_rows_.push_back(InetRow{s, family, protocol});
    return ok;
  }

  bool dumpUnix() {
    auto req = sockDiagDumpRequest<unix_diag_req>(diag_->nextSeq(), AF_UNIX);
    req.r.udiag_states = ~0u;
    req.r.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_UID;
    return dump(&req, sizeof req, "unix sockets", [&](const uint8_t* data, size_t n, bool* done) {
      return parseUnixDiagDatagram(data, n, &rows_, done);
    });
  }

  bool dumpPacket() {
    auto req = sockDiagDumpRequest<packet_diag_req>(diag_->nextSeq(), AF_PACKET);
    req.r.pdiag_show = PACKET_SHOW_INFO;
    return dump(&req, sizeof req, "packet sockets", [&](const uint8_t* data, size_t n, bool* done) {
      return parsePacketDiagDatagram(data, n, &rows_, done);
    });
  }

  // Which pids hold each dumped socket, and their comms, from the capture's one walk of
  // <proc_root>/*/fd (fd_table.h: shared with open_files, bounded by kFdWalkBudget, then a
  // warning) unless sink.stopped().
  void findOwners() {
    for (const InetRow& row : inet_rows_) {
      if (row.socket.inode != 0) owners_.try_emplace(row.socket.inode);
    }
    for (const Row& row : rows_) {
      if (row.inode != 0) owners_.try_emplace(row.inode);
    }
    if (owners_.empty()) return;
    std::shared_ptr<const proc::FdWalk> walk = openFds(ctx_, sink_);
    if (walk == nullptr) return;  // stopped while another collector walked
    if (std::string warning = fdWalkIncomplete(*walk, sink_, "socket owners"); !warning.empty()) {
      sink_.warn(warning);
    }
    for (const proc::ProcessFds& process : walk->processes) {
      bool owns = false;
      for (const proc::OpenFd& fd : process.fds) {
        auto it = owners_.find(proc::socketInodeFromLink(fd.target));
        if (it == owners_.end()) continue;  // not a socket, or another network namespace's
        it->second.push_back(process.pid);
        owns = true;
      }
      if (owns) {
        comms_[process.pid] = process.comm ? json(proc::utf8(*process.comm)) : json(nullptr);
      }
    }
  }

  const CollectContext& ctx_;
  ArtifactSink& sink_;
  std::optional<SockDiagSocket> diag_;
  std::vector<InetRow> inet_rows_;
  std::vector<Row> rows_;                                  // UNIX and packet sockets
  std::unordered_map<uint64_t, std::vector<int>> owners_;  // socket inode -> pids
  std::unordered_map<int, json> comms_;
};

class SocketCollector final : public Collector {
 public:
  std::string_view name() const override { return "sockets"; }
  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    return SocketScan(ctx, sink).run();
  }
};

}  // namespace

std::unique_ptr<Collector> makeSocketCollector() { return std::make_unique<SocketCollector>(); }

}  // namespace bulkhead::agent::collect
