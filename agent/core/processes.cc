#include "agent/core/processes.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>
#include <set>

#include "common/lines.h"

namespace bulkhead::agent {
namespace {

template <typename T>
bool parseNumber(std::string_view s, T* out, int base = 10) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

// "0100007F:0016" -> ip text and port. Each 8-hex group is a native-endian u32.
bool decodeEndpoint(std::string_view text, bool v6, std::string* ip, uint16_t* port) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view hex = text.substr(0, colon);
  if (hex.size() != (v6 ? 32u : 8u)) return false;
  uint8_t bytes[16] = {};
  for (size_t w = 0; w < hex.size() / 8; ++w) {
    uint32_t word = 0;
    if (!parseNumber(hex.substr(w * 8, 8), &word, 16)) return false;
    std::memcpy(bytes + w * 4, &word, 4);
  }
  if (!parseNumber(text.substr(colon + 1), port, 16)) return false;
  char buf[INET6_ADDRSTRLEN] = {};
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (!v6) {
    inet_ntop(AF_INET, bytes, buf, sizeof buf);
  } else if (std::memcmp(bytes, kMapped, 12) == 0) {
    inet_ntop(AF_INET, bytes + 12, buf, sizeof buf);   // ::ffff:a.b.c.d is an IPv4 peer
  } else {
    inet_ntop(AF_INET6, bytes, buf, sizeof buf);
  }
  *ip = buf;
  return true;
}

std::string endpointText(const std::string& ip, uint16_t port) {
  if (ip.find(':') != std::string::npos) return fmt::format("[{}]:{}", ip, port);
  return fmt::format("{}:{}", ip, port);
}

}  // namespace

absl::StatusOr<ProcStat> parseProcStat(std::string_view text) {
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return absl::InvalidArgumentError(fmt::format("/proc stat: no (comm) in \"{}\"", text.substr(0, 80)));
  }
  ProcStat st;
  if (!parseNumber(trim(text.substr(0, open)), &st.pid)) {
    return absl::InvalidArgumentError(fmt::format("/proc stat: bad pid in \"{}\"", text.substr(0, 80)));
  }
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  // After ")": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9) minflt(10)
  // cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15) cutime(16) cstime(17) priority(18)
  // nice(19) num_threads(20) itrealvalue(21) starttime(22).
  auto f = splitSpaces(trim(text.substr(close + 1)));
  if (f.size() < 20 || f[0].size() != 1 || !parseNumber(f[1], &st.ppid) ||
      !parseNumber(f[3], &st.sid) || !parseNumber(f[4], &st.tty_nr) ||
      !parseNumber(f[19], &st.start_ticks)) {
    return absl::InvalidArgumentError(
        fmt::format("/proc stat: bad fields after comm in \"{}\"", text.substr(0, 120)));
  }
  st.state = f[0][0];
  return st;
}

ProcStatus parseProcStatus(std::string_view text) {
  ProcStatus st;
  for (std::string_view line : splitLines(text)) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    auto f = splitSpaces(line.substr(colon + 1));
    if (f.empty()) continue;
    if (key == "Tgid") {
      parseNumber(f[0], &st.tgid);
    } else if (key == "PPid") {
      parseNumber(f[0], &st.ppid);
    } else if (key == "Threads") {
      parseNumber(f[0], &st.threads);
    } else if (key == "Uid" || key == "Gid") {
      // "Uid:\treal\teffective\tsaved\tfs"
      uint32_t real = 0, effective = 0;
      bool ok_real = parseNumber(f[0], &real);
      bool ok_eff = f.size() > 1 && parseNumber(f[1], &effective);
      if (key == "Uid") {
        if (ok_real) st.uid = real;
        if (ok_eff) st.euid = effective;
      } else if (ok_real) {
        st.gid = real;
      }
    }
  }
  return st;
}

absl::StatusOr<uint32_t> parseStatusUid(std::string_view text) {
  auto uid = parseProcStatus(text).uid;
  if (!uid) return absl::InvalidArgumentError("/proc status: no Uid line with a number");
  return *uid;
}

absl::StatusOr<uint32_t> parseAuditId(std::string_view field, std::string_view text) {
  uint32_t v = 0;
  if (!parseNumber(trim(text), &v)) {
    return absl::InvalidArgumentError(fmt::format("{}: \"{}\" is not a number", field, trim(text)));
  }
  return v;
}

std::string joinCmdline(std::string_view raw) {
  while (!raw.empty() && raw.back() == '\0') raw.remove_suffix(1);
  std::string out(raw);
  std::replace(out.begin(), out.end(), '\0', ' ');
  return out;
}

std::string ttyName(int tty_nr) {
  if (tty_nr == 0) return "";
  auto dev = static_cast<dev_t>(static_cast<unsigned>(tty_nr));
  unsigned maj = major(dev);
  unsigned min = minor(dev);
  if (maj >= 136 && maj <= 143) return fmt::format("pts/{}", (maj - 136) * 256 + min);
  if (maj == 4 && min < 64) return fmt::format("tty{}", min);
  if (maj == 4) return fmt::format("ttyS{}", min - 64);
  return fmt::format("tty({}:{})", maj, min);
}

std::vector<ProcNetSocket> parseProcNetTcp(std::string_view text, bool v6) {
  std::vector<ProcNetSocket> out;
  for (std::string_view line : splitLines(text)) {
    auto f = splitSpaces(line);
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if (f.size() < 10 || f[0].empty() || f[0].back() != ':') continue;
    ProcNetSocket s;
    std::string lip;
    uint16_t lport = 0, rport = 0;
    if (!decodeEndpoint(f[1], v6, &lip, &lport) || !decodeEndpoint(f[2], v6, &s.remote_ip, &rport) ||
        !parseNumber(f[3], &s.state, 16) || !parseNumber(f[9], &s.inode)) {
      continue;
    }
    s.local = endpointText(lip, lport);
    s.remote = endpointText(s.remote_ip, rport);
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<SessionInfo> groupSessions(const std::vector<ProcessInfo>& procs,
                                       const std::vector<ProcNetSocket>& sockets) {
  std::map<uint64_t, const ProcNetSocket*> established;
  for (const auto& s : sockets) {
    if (s.state == 1) established[s.inode] = &s;
  }
  std::map<uint32_t, std::vector<const ProcessInfo*>> by_id;
  for (const auto& p : procs) {
    if (p.sessionid != kNoAuditId && !p.kernel_thread) by_id[p.sessionid].push_back(&p);
  }
  std::vector<SessionInfo> out;
  for (auto& [id, members] : by_id) {
    std::sort(members.begin(), members.end(), [](const ProcessInfo* a, const ProcessInfo* b) {
      return a->start_ticks != b->start_ticks ? a->start_ticks < b->start_ticks : a->pid < b->pid;
    });
    SessionInfo s;
    s.id = id;
    const ProcessInfo* leader = members.front();
    s.leader_pid = leader->pid;
    s.start_unix = leader->start_unix;
    s.loginuid = leader->loginuid;
    std::string any_remote;
    for (const ProcessInfo* p : members) {
      s.pids.push_back(p->pid);
      if (s.tty.empty() && p->tty_nr != 0) s.tty = ttyName(p->tty_nr);
      if (p->comm == "sshd") s.service = "sshd";
      for (uint64_t inode : p->socket_inodes) {
        auto e = established.find(inode);
        if (e == established.end()) continue;
        if (p->comm == "sshd" && s.remote.empty()) s.remote = e->second->remote_ip;
        if (any_remote.empty()) any_remote = e->second->remote_ip;
      }
    }
    if (s.remote.empty() && s.service == "sshd") s.remote = any_remote;
    if (s.service.empty()) s.service = leader->comm;
    // The login user: loginuid names it even after su/sudo changed the uid.
    for (const ProcessInfo* p : members) {
      if (p->uid == s.loginuid && !p->user.empty()) {
        s.user = p->user;
        break;
      }
    }
    if (s.user.empty()) s.user = std::to_string(s.loginuid);
    std::sort(s.pids.begin(), s.pids.end());
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<int> withDescendants(const std::vector<ProcessInfo>& procs, int root) {
  std::multimap<int, int> children;
  for (const auto& p : procs) {
    if (p.pid != root) children.emplace(p.ppid, p.pid);
  }
  std::vector<int> out{root};
  std::set<int> seen{root};
  for (size_t i = 0; i < out.size(); ++i) {
    auto [b, e] = children.equal_range(out[i]);
    for (auto it = b; it != e; ++it) {
      if (seen.insert(it->second).second) out.push_back(it->second);
    }
  }
  return out;
}

std::optional<std::string> protectedBecause(const ProcessInfo& p, const Protection& protection) {
  if (p.pid == 1) return "pid 1";
  if (p.pid == protection.self_pid) return "the bulkhead agent itself";
  for (const auto& exe : protection.exes) {
    if (p.exe == exe) return fmt::format("protected exe {}", exe);
  }
  for (const auto& comm : protection.comms) {
    if (p.comm == comm) return fmt::format("protected name {}", comm);
  }
  if (protection.sshd_listener && p.comm == "sshd" && p.ppid <= 1 &&
      p.sessionid == kNoAuditId) {
    return "the sshd listener";
  }
  return std::nullopt;
}

KillPlan planKill(const std::vector<ProcessInfo>& targets, const Protection& protection) {
  KillPlan plan;
  for (const auto& p : targets) {
    if (p.kernel_thread) continue;
    if (auto why = protectedBecause(p, protection)) {
      plan.spared.push_back(SparedProcess{p, *why});
    } else {
      plan.kill.push_back(p);
    }
  }
  return plan;
}

bool sessionMatches(const SessionInfo& s, const SessionMatch& m) {
  if (m.session_id) return s.id == *m.session_id;
  if (m.uid) return s.loginuid == *m.uid;
  if (m.from) {
    if (s.remote.empty()) return false;
    auto ip = parseCidr("remote", s.remote);
    return ip.ok() && m.from->contains(*ip);
  }
  if (m.all) return s.interactive();
  return false;
}

absl::StatusOr<LogindSession> parseLoginctlShow(std::string_view text) {
  LogindSession s;
  for (std::string_view line : splitLines(text)) {
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = line.substr(0, eq);
    std::string value(line.substr(eq + 1));
    if (key == "Id") {
      s.id = value;
    } else if (key == "User") {
      if (!parseNumber(value, &s.uid)) {
        return absl::InvalidArgumentError(fmt::format("loginctl User: \"{}\" is not a uid", value));
      }
    } else if (key == "Name") {
      s.user = value;
    } else if (key == "TTY") {
      s.tty = value;
    } else if (key == "RemoteHost") {
      s.remote_host = value;
    } else if (key == "Service") {
      s.service = value;
    } else if (key == "Leader") {
      if (!parseNumber(value, &s.leader)) s.leader = 0;
    }
  }
  if (s.id.empty()) return absl::InvalidArgumentError("loginctl show-session: no Id line");
  return s;
}

std::vector<std::string> parseLoginctlList(std::string_view text) {
  std::vector<std::string> ids;
  for (std::string_view line : splitLines(text)) {
    auto f = splitSpaces(line);
    if (!f.empty()) ids.emplace_back(f[0]);
  }
  return ids;
}

std::vector<SessionInfo> mergeLogindSessions(const std::vector<LogindSession>& logind,
                                             const std::vector<SessionInfo>& from_proc) {
  std::map<uint32_t, const SessionInfo*> by_id;
  for (const auto& s : from_proc) by_id[s.id] = &s;
  std::set<uint32_t> seen;
  std::vector<SessionInfo> out;
  for (const auto& l : logind) {
    SessionInfo s;
    uint32_t id = kNoAuditId;
    if (parseNumber(l.id, &id)) {
      if (auto it = by_id.find(id); it != by_id.end()) s = *it->second;
      s.id = id;
      seen.insert(id);
    }
    s.loginuid = l.uid;
    if (!l.user.empty()) s.user = l.user;
    if (!l.tty.empty()) s.tty = l.tty;
    if (!l.remote_host.empty()) s.remote = l.remote_host;
    if (!l.service.empty()) s.service = l.service;
    if (l.leader > 0) s.leader_pid = l.leader;
    out.push_back(std::move(s));
  }
  for (const auto& s : from_proc) {
    if (!seen.count(s.id)) out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const SessionInfo& a, const SessionInfo& b) { return a.id < b.id; });
  return out;
}

}  // namespace bulkhead::agent
