#include "agent/linux/tamper_watch.h"

#include <arpa/inet.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/linux/netlink_messages.h"
#include "common/format.h"

namespace bulkhead::agent {
namespace {

using Clock = std::chrono::steady_clock;

void addDistinct(std::vector<std::string>* v, std::string s) {
  if (std::find(v->begin(), v->end(), s) == v->end()) v->push_back(std::move(s));
}

std::string attrString(const uint8_t* p, size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  if (auto z = s.find('\0'); z != std::string::npos) s.resize(z);
  return s;
}

uint32_t attrBe32(const uint8_t* p, size_t n) {
  uint32_t v = 0;
  if (n >= 4) std::memcpy(&v, p, 4);
  return ntohl(v);
}

}  // namespace

std::string nftMessageName(uint16_t t) {
  static constexpr const char* kNames[] = {
      "NEWTABLE", "GETTABLE",     "DELTABLE",     "NEWCHAIN",     "GETCHAIN",
      "DELCHAIN", "NEWRULE",      "GETRULE",      "DELRULE",      "NEWSET",
      "GETSET",   "DELSET",       "NEWSETELEM",   "GETSETELEM",   "DELSETELEM",
      "NEWGEN",   "GETGEN",       "TRACE",        "NEWOBJ",       "GETOBJ",
      "DELOBJ",   "GETOBJ_RESET", "NEWFLOWTABLE", "GETFLOWTABLE", "DELFLOWTABLE"};
  if (t < sizeof(kNames) / sizeof(kNames[0])) return kNames[t];
  return fmt::format("MSG_{}", t);
}

std::string toString(TamperEvent::Reason r) {
  switch (r) {
    case TamperEvent::Reason::kTableChanged:
      return "table-changed";
    case TamperEvent::Reason::kOverflow:
      return "event-overflow";
    case TamperEvent::Reason::kBackstop:
      return "backstop";
  }
  return "unknown";
}

absl::Status parseNftEvents(const void* data, size_t len, std::vector<NftEvent>* out) {
  return forEachNetlinkMessage(
      static_cast<const uint8_t*>(data), len, "nf_tables event",
      [out](const NetlinkMessage& m) -> absl::StatusOr<bool> {
        if ((m.header.nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES ||
            m.payload_len < sizeof(nfgenmsg)) {
          return true;
        }
        NftEvent e;
        e.msg_type = m.header.nlmsg_type & 0xff;
        nfgenmsg g;
        std::memcpy(&g, m.payload, sizeof(g));
        e.family = g.nfgen_family;
        size_t a = NLMSG_ALIGN(sizeof(nfgenmsg));
        while (a + sizeof(nlattr) <= m.payload_len) {
          nlattr at;
          std::memcpy(&at, m.payload + a, sizeof(at));
          if (at.nla_len < sizeof(nlattr) || a + at.nla_len > m.payload_len) {
            return absl::DataLossError(fmt::format("malformed attribute in nf_tables event {}",
                                                   nftMessageName(e.msg_type)));
          }
          const uint8_t* p = m.payload + a + NLA_HDRLEN;
          const size_t n = at.nla_len - NLA_HDRLEN;
          const int type = at.nla_type & NLA_TYPE_MASK;
          if (e.msg_type == NFT_MSG_NEWGEN) {
            if (type == NFTA_GEN_ID) e.gen_id = attrBe32(p, n);
            if (type == NFTA_GEN_PROC_PID) e.pid = attrBe32(p, n);
            if (type == NFTA_GEN_PROC_NAME) e.proc_name = attrString(p, n);
          } else if (type == 1) {
            // NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
            // NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE, NFTA_FLOWTABLE_TABLE are all attribute 1.
            e.table = attrString(p, n);
          }
          a += NLA_ALIGN(at.nla_len);
        }
        out->push_back(std::move(e));
        return true;
      });
}

TamperAggregator::TamperAggregator(uint8_t family, std::string table)
    : family_(family), table_(std::move(table)) {}

bool TamperAggregator::add(const NftEvent& e) {
  if (e.msg_type == NFT_MSG_NEWGEN) {
    if (!in_relevant_txn_) return false;
    in_relevant_txn_ = false;
    addDistinct(&event_.actors,
                fmt::format("{} (pid {})", e.proc_name.empty() ? "?" : e.proc_name, e.pid));
    return true;
  }
  if (e.msg_type == NFT_MSG_TRACE) return false;
  if (e.family != family_ || e.table != table_) return false;
  ++event_.messages;
  addDistinct(&event_.kinds, nftMessageName(e.msg_type));
  in_relevant_txn_ = true;
  return true;
}

TamperEvent TamperAggregator::take() {
  TamperEvent out = std::move(event_);
  event_ = TamperEvent{};
  return out;
}

absl::StatusOr<std::unique_ptr<NetlinkTamperWatch>> NetlinkTamperWatch::create(Options options,
                                                                               Callback callback) {
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
  if (sock < 0) {
    return absl::UnavailableError(fmt::format(
        "tamper watch: cannot open NETLINK_NETFILTER socket (changes to our table will only be "
        "seen by the periodic check): {}",
        std::strerror(errno)));
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  int group = NFNLGRP_NFTABLES;
  if (bind(sock, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
      setsockopt(sock, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0) {
    int err = errno;
    close(sock);
    return absl::UnavailableError(fmt::format(
        "tamper watch: cannot join NFNLGRP_NFTABLES (changes to our table will only be seen by "
        "the periodic check): {}",
        std::strerror(err)));
  }
  int rcvbuf = 4 << 20;  // bursts of set-element events; overflow is handled, but rare is better
  if (setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0) {
    setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  }
  int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd < 0) {
    int err = errno;
    close(sock);
    return absl::InternalError(fmt::format("tamper watch: eventfd: {}", std::strerror(err)));
  }
  std::unique_ptr<NetlinkTamperWatch> w(
      new NetlinkTamperWatch(std::move(options), std::move(callback), sock, stop_fd));
  w->thread_ = std::thread([p = w.get()] { p->run(); });
  return w;
}

NetlinkTamperWatch::NetlinkTamperWatch(Options options, Callback callback, int sock, int stop_fd)
    : options_(std::move(options)),
      callback_(std::move(callback)),
      sock_(sock),
      stop_fd_(stop_fd) {}

NetlinkTamperWatch::~NetlinkTamperWatch() {
  stop();
  close(sock_);
  close(stop_fd_);
}

void NetlinkTamperWatch::stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  ssize_t n = write(stop_fd_, &one, sizeof(one));
  (void)n;  // an eventfd write of 1 cannot fail short of overflow
  thread_.join();
}

void NetlinkTamperWatch::run() {
  TamperAggregator agg(options_.family, options_.table);
  std::vector<uint8_t> buf(256 * 1024);
  std::vector<NftEvent> events;
  bool window_open = false;     // a debounce window is open...
  Clock::time_point fire_at{};  // ...and ends here
  bool overflow = false;
  const bool backstop_on = options_.backstop.count() > 0;
  Clock::time_point next_backstop = Clock::now() + options_.backstop;

  for (;;) {
    Clock::time_point now = Clock::now();
    int timeout_ms = -1;
    auto until = [&](Clock::time_point t) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - now).count();
      int v = static_cast<int>(std::clamp<int64_t>(ms, 0, 60000));
      timeout_ms = timeout_ms < 0 ? v : std::min(timeout_ms, v);
    };
    if (window_open) until(fire_at);
    if (backstop_on) until(next_backstop);

    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {sock_, POLLIN, 0}};
    int pr = poll(fds, 2, timeout_ms);
    if (pr < 0 && errno != EINTR) return;  // cannot happen with valid fds
    if (fds[0].revents & POLLIN) return;

    if (pr > 0 && (fds[1].revents & (POLLIN | POLLERR))) {
      for (;;) {
        ssize_t n = recv(sock_, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == ENOBUFS) {  // events lost: we cannot know what changed
            overflow = true;
            continue;
          }
          break;  // EAGAIN
        }
        events.clear();
        // A malformed datagram is treated like lost events: re-check.
        if (!parseNftEvents(buf.data(), static_cast<size_t>(n), &events).ok()) overflow = true;
        bool relevant = false;
        for (const NftEvent& e : events) relevant = agg.add(e) || relevant;
        if ((relevant || overflow) && !window_open) {
          window_open = true;
          fire_at = Clock::now() + options_.debounce;
        }
      }
      if (overflow && !window_open) {
        window_open = true;
        fire_at = Clock::now() + options_.debounce;
      }
    }

    now = Clock::now();
    if (window_open && now >= fire_at) {
      TamperEvent ev = agg.take();
      if (overflow) ev.reason = TamperEvent::Reason::kOverflow;
      window_open = false;
      overflow = false;
      callback_(ev);
      next_backstop = Clock::now() + options_.backstop;
    } else if (backstop_on && now >= next_backstop) {
      TamperEvent ev;
      ev.reason = TamperEvent::Reason::kBackstop;
      callback_(ev);
      next_backstop = Clock::now() + options_.backstop;
    }
  }
}

}  // namespace bulkhead::agent
