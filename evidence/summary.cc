// summarize(): what a responder looks at first, from a handful of members read in one pass.
// Every input is untrusted text: bad JSON lines are skipped, missing fields are tolerated.
#include "evidence/summary.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/format.h"
#include "evidence/bundle.h"
#include "evidence/json_read.h"

namespace bulkhead::evidence {
namespace {

using nlohmann::json;

constexpr size_t kRecentLogins = 10;
constexpr size_t kTopSources = 5;
constexpr size_t kRemotesPerFinding = 3;
// Bounds on what a summary of an untrusted bundle holds: entries per list (the rest counted
// in "omitted") and bytes per text value (clipped and escaped).
constexpr size_t kMaxListed = 100;
constexpr size_t kMaxText = 512;

// Parses JSON lines; lines that are not JSON objects are skipped and counted.
std::vector<json> jsonLines(const std::string& text, size_t* bad) {
  std::vector<json> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      ++*bad;
      continue;
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::string str(const json& j, const char* key) {
  return boundedText(jsonStringOr(j, key), kMaxText);
}

bool flag(const json& j, const char* key) { return jsonBoolOr(j, key); }

// The summary's fields have one type each, whatever the bundle holds: a text field is a
// string (clipped and escaped) or null, an integer field an int64 or null. Null means missing,
// of another type, or (integers) not an integer that fits int64.
json textOrNull(const json& j, const char* key) {
  std::optional<std::string> value = jsonString(j, key);
  return value ? json(boundedText(*value, kMaxText)) : json(nullptr);
}

json intOrNull(const json& j, const char* key) {
  std::optional<int64_t> value = jsonInt(j, key);
  return value ? json(*value) : json(nullptr);
}

int64_t number(const json& j, const char* key) { return jsonIntOr(j, key); }

// Loopback (127/8, ::1, v4-mapped 127/8) or unspecified (0.0.0.0, ::). Unparsable: false.
bool isLocalOrUnspecified(const std::string& address) {
  unsigned char b[16];
  if (inet_pton(AF_INET, address.c_str(), b) == 1) {
    return b[0] == 127 || (b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0);
  }
  if (inet_pton(AF_INET6, address.c_str(), b) == 1) {
    bool zero_prefix = std::all_of(b, b + 10, [](unsigned char c) { return c == 0; });
    bool all_zero =
        zero_prefix && std::all_of(b + 10, b + 16, [](unsigned char c) { return c == 0; });
    bool loopback = zero_prefix && b[10] == 0 && b[11] == 0 && b[12] == 0 && b[13] == 0 &&
                    b[14] == 0 && b[15] == 1;
    bool mapped_loopback = zero_prefix && b[10] == 0xff && b[11] == 0xff && b[12] == 127;
    bool mapped_any = zero_prefix && b[10] == 0xff && b[11] == 0xff && b[12] == 0 && b[13] == 0 &&
                      b[14] == 0 && b[15] == 0;
    return all_zero || loopback || mapped_loopback || mapped_any;
  }
  return false;
}

bool isLoopback(const std::string& address) {
  unsigned char b[16];
  if (inet_pton(AF_INET, address.c_str(), b) == 1) return b[0] == 127;
  return address == "::1" || address.starts_with("::ffff:127.");
}

std::string endpoint(const json& socket, const char* address_key, const char* port_key) {
  std::string address = str(socket, address_key);
  std::string port = socket.contains(port_key) && socket[port_key].is_number()
                         ? socket[port_key].dump()
                         : std::string("?");
  if (address.find(':') != std::string::npos) return fmt::format("[{}]:{}", address, port);
  return fmt::format("{}:{}", address.empty() ? "?" : address, port);
}

bool under(const std::string& path, std::initializer_list<std::string_view> dirs) {
  for (std::string_view d : dirs) {
    if (path.size() > d.size() && path.starts_with(d) && path[d.size()] == '/') return true;
  }
  return false;
}

// Why a listener's owner is unexpected; empty if it is not.
std::string listenerWhy(const json* process, int64_t pid) {
  if (process == nullptr) {
    return pid < 0 ? "no owning process" : fmt::format("owner pid {} not in the process list", pid);
  }
  if (flag(*process, "exe_memfd")) return "executable is a memfd";
  if (flag(*process, "exe_deleted")) return "executable deleted";
  std::string exe = str(*process, "exe");
  if (exe.empty()) return "";  // unreadable exe (kernel thread, permission): not judged
  for (std::string_view dir : {"/tmp", "/var/tmp", "/dev/shm", "/home", "/root", "/run/user"}) {
    if (under(exe, {dir})) return fmt::format("executable under {}", dir);
  }
  if (!under(exe, {"/usr", "/bin", "/sbin", "/lib", "/lib64", "/opt"})) {
    return "executable outside the system directories";
  }
  return "";
}

int severityRank(const std::string& severity) {
  if (severity == "high") return 0;
  if (severity == "medium") return 1;
  return 2;
}

json finding(std::string kind, std::string severity, const json* process, int64_t pid,
             std::string detail) {
  json f = {{"kind", std::move(kind)}, {"severity", std::move(severity)}};
  if (pid >= 0) f["pid"] = pid;
  if (process != nullptr) {
    f["comm"] = textOrNull(*process, "comm");
    f["exe"] = textOrNull(*process, "exe");
  }
  f["detail"] = std::move(detail);
  return f;
}

std::string shortSha(const std::string& sha) {
  return sha.size() > 12 ? sha.substr(0, 12) + "..." : sha;
}

}  // namespace

absl::StatusOr<json> summarize(const std::filesystem::path& bundle) {
  const std::vector<std::string> wanted = {"manifest.json",
                                           "metadata.json",
                                           "artifacts/processes.jsonl",
                                           "artifacts/sockets.jsonl",
                                           "artifacts/wtmp.jsonl",
                                           "artifacts/utmp.jsonl",
                                           "artifacts/btmp.jsonl",
                                           "artifacts/preload.jsonl",
                                           "artifacts/kernel.json",
                                           "artifacts/hidden_pids.jsonl",
                                           "collection-log.jsonl"};
  auto members = readMembers(bundle, wanted);
  if (!members.ok()) return members.status();
  return summarizeMembers(*members);
}

json summarizeMembers(const std::map<std::string, std::string>& members) {
  auto text = [&](const char* path) -> const std::string& {
    static const std::string kEmpty;
    auto it = members.find(path);
    return it == members.end() ? kEmpty : it->second;
  };
  auto object = [&](const char* path) {
    json j = json::parse(text(path), nullptr, false);
    return j.is_object() ? j : json::object();
  };
  size_t bad_lines = 0;
  const json manifest = object("manifest.json");
  const json metadata = object("metadata.json");
  const json kernel = object("artifacts/kernel.json");
  const auto processes = jsonLines(text("artifacts/processes.jsonl"), &bad_lines);
  const auto sockets = jsonLines(text("artifacts/sockets.jsonl"), &bad_lines);

  std::map<int64_t, const json*> by_pid;
  for (const auto& p : processes) {
    if (p.contains("pid") && p["pid"].is_number_integer()) by_pid[p["pid"].get<int64_t>()] = &p;
  }
  auto processOf = [&](int64_t pid) -> const json* {
    auto it = by_pid.find(pid);
    return it == by_pid.end() ? nullptr : it->second;
  };
  auto pidsOf = [](const json& socket) {
    std::vector<int64_t> pids;
    if (auto it = socket.find("pids"); it != socket.end() && it->is_array()) {
      for (const auto& p : *it) {
        if (p.is_number_integer()) pids.push_back(p.get<int64_t>());
      }
    }
    return pids;
  };

  json s;
  s["host_id"] = metadata.contains("host_id") ? textOrNull(metadata, "host_id")
                                              : textOrNull(manifest, "host_id");
  s["capture_id"] = metadata.contains("capture_id") ? textOrNull(metadata, "capture_id")
                                                    : textOrNull(manifest, "capture_id");
  s["collected_at_unix_ms"] = metadata.contains("collected_at_unix_ms")
                                  ? intOrNull(metadata, "collected_at_unix_ms")
                                  : intOrNull(manifest, "started_at_unix_ms");
  json findings = json::array();
  // The collecting agent's own connections (its controller channel) are listed, marked, and
  // never raised as findings.
  const int64_t agent_pid = metadata.contains("agent_pid") ? number(metadata, "agent_pid") : -1;

  // Remote connections and listeners, by socket; remembered per pid for the deleted-exe lines.
  json remote = json::array();
  json listeners = json::array();
  std::map<int64_t, std::vector<std::string>> remotes_of, listens_of;
  for (const auto& sock : sockets) {
    const std::string family = str(sock, "family");
    if (family != "inet" && family != "inet6") continue;
    const std::string protocol = str(sock, "protocol");
    const std::string state = str(sock, "state");
    const auto pids = pidsOf(sock);
    const bool connected = (protocol == "tcp" || protocol == "udp") && state == "established";
    const std::string remote_address = str(sock, "remote_address");
    if (connected && !remote_address.empty() && !isLocalOrUnspecified(remote_address)) {
      const std::string local = endpoint(sock, "local_address", "local_port");
      const std::string peer = endpoint(sock, "remote_address", "remote_port");
      for (int64_t pid : pids.empty() ? std::vector<int64_t>{-1} : pids) {
        const json* proc = processOf(pid);
        json c = {{"pid", pid >= 0 ? json(pid) : json(nullptr)},
                  {"comm", proc ? textOrNull(*proc, "comm") : json(nullptr)},
                  {"exe", proc ? textOrNull(*proc, "exe") : json(nullptr)},
                  {"protocol", protocol},
                  {"local", local},
                  {"remote", peer},
                  {"state", state}};
        if (pid >= 0 && pid == agent_pid) {
          c["note"] = "the bulkhead agent's controller channel";
          remote.push_back(std::move(c));
          continue;
        }
        remote.push_back(std::move(c));
        remotes_of[pid].push_back(fmt::format("{} {}", protocol, peer));
      }
    }
    const bool tcp_listen = protocol == "tcp" && state == "listen";
    const bool udp_bound =
        protocol == "udp" && state == "unconnected" && !isLoopback(str(sock, "local_address"));
    if (tcp_listen || udp_bound) {
      const std::string local = endpoint(sock, "local_address", "local_port");
      for (int64_t pid : pids.empty() ? std::vector<int64_t>{-1} : pids) {
        const json* proc = processOf(pid);
        listens_of[pid].push_back(fmt::format("{} {}", protocol, local));
        std::string why = listenerWhy(proc, pid);
        if (why.empty()) continue;
        listeners.push_back({{"pid", pid >= 0 ? json(pid) : json(nullptr)},
                             {"comm", proc ? textOrNull(*proc, "comm") : json(nullptr)},
                             {"exe", proc ? textOrNull(*proc, "exe") : json(nullptr)},
                             {"protocol", protocol},
                             {"local", local},
                             {"why", why}});
        findings.push_back(finding("unexpected_listener", "medium", proc, pid,
                                   fmt::format("{} {}: {}", protocol, local, why)));
      }
    }
  }

  // Deleted and memfd executables.
  json deleted = json::array();
  for (const auto& p : processes) {
    const bool memfd = flag(p, "exe_memfd");
    if (!memfd && !flag(p, "exe_deleted")) continue;
    const int64_t pid = number(p, "pid");
    deleted.push_back({{"pid", pid},
                       {"comm", textOrNull(p, "comm")},
                       {"exe", textOrNull(p, "exe")},
                       {"exe_sha256", textOrNull(p, "exe_sha256")},
                       {"recovered", textOrNull(p, "recovered")},
                       {"memfd", memfd}});
    const std::string sha = str(p, "exe_sha256");
    const std::string recovered = str(p, "recovered");
    std::string detail = fmt::format(
        "sha256 {} {}", sha.empty() ? "unknown" : shortSha(sha),
        recovered.empty() ? std::string("not recovered")
                          : fmt::format("recovered {}{}", recovered,
                                        flag(p, "recovered_truncated") ? " (truncated)" : ""));
    if (auto it = remotes_of.find(pid); it != remotes_of.end()) {
      detail += fmt::format("; connected to {}", it->second.front());
      if (it->second.size() > 1) detail += fmt::format(" and {} more", it->second.size() - 1);
    }
    if (auto it = listens_of.find(pid); it != listens_of.end()) {
      detail += fmt::format("; listening on {}", it->second.front());
      if (it->second.size() > 1) detail += fmt::format(" and {} more", it->second.size() - 1);
    }
    findings.push_back(finding(memfd ? "memfd_executable" : "deleted_executable", "high", &p, pid,
                               std::move(detail)));
  }

  // One remote_connection finding per process.
  for (const auto& [pid, peers] : remotes_of) {
    std::string detail;
    for (size_t i = 0; i < peers.size() && i < kRemotesPerFinding; ++i) {
      detail += fmt::format("{}{}", i == 0 ? "to " : ", ", peers[i]);
    }
    if (peers.size() > kRemotesPerFinding) {
      detail += fmt::format(" and {} more", peers.size() - kRemotesPerFinding);
    }
    findings.push_back(finding("remote_connection", "info", processOf(pid), pid, detail));
  }

  // Logins.
  auto loginOf = [](const json& r, bool current) {
    std::string from = str(r, "host");
    if (from.empty()) from = str(r, "address");
    json l = {{"user", textOrNull(r, "user")},
              {"from", from.empty() ? json(nullptr) : json(from)},
              {"line", textOrNull(r, "line")},
              {"at_unix_ms", intOrNull(r, "at_unix_ms")}};
    if (current) l["current"] = true;
    return l;
  };
  std::vector<json> logins;
  std::set<std::string> seen;
  for (const auto& r : jsonLines(text("artifacts/utmp.jsonl"), &bad_lines)) {
    if (str(r, "type") != "user_process") continue;
    json l = loginOf(r, true);
    seen.insert(
        fmt::format("{}|{}|{}", l["user"].dump(), l["line"].dump(), l["at_unix_ms"].dump()));
    logins.push_back(std::move(l));
  }
  std::vector<json> past;
  for (const auto& r : jsonLines(text("artifacts/wtmp.jsonl"), &bad_lines)) {
    if (str(r, "type") != "user_process") continue;
    json l = loginOf(r, false);
    if (seen.count(fmt::format("{}|{}|{}", l["user"].dump(), l["line"].dump(),
                               l["at_unix_ms"].dump())) == 0) {
      past.push_back(std::move(l));
    }
  }
  auto newest_first = [](const json& a, const json& b) {
    return number(a, "at_unix_ms") > number(b, "at_unix_ms");
  };
  std::stable_sort(past.begin(), past.end(), newest_first);
  if (past.size() > kRecentLogins) past.resize(kRecentLogins);
  logins.insert(logins.end(), past.begin(), past.end());
  std::stable_sort(logins.begin(), logins.end(), newest_first);
  s["recent_logins"] = logins;

  std::map<std::string, uint64_t> failed_from;
  uint64_t failed = 0;
  for (const auto& r : jsonLines(text("artifacts/btmp.jsonl"), &bad_lines)) {
    ++failed;
    std::string from = str(r, "host");
    if (from.empty()) from = str(r, "address");
    ++failed_from[from.empty() ? "unknown" : from];
  }
  std::vector<std::pair<std::string, uint64_t>> top(failed_from.begin(), failed_from.end());
  std::stable_sort(top.begin(), top.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (top.size() > kTopSources) top.resize(kTopSources);
  json top_sources = json::array();
  for (const auto& [from, count] : top) top_sources.push_back({{"from", from}, {"count", count}});
  s["failed_logins"] = {{"count", failed}, {"top_sources", top_sources}};
  if (failed > 0) {
    findings.push_back(finding("failed_logins", "info", nullptr, -1,
                               fmt::format("{} failed logins; most from {} ({})", failed,
                                           top.front().first, top.front().second)));
  }

  // Preload entries, hidden pids, kernel taint.
  json preload = json::array();
  for (const auto& r : jsonLines(text("artifacts/preload.jsonl"), &bad_lines)) {
    preload.push_back({{"source", textOrNull(r, "source")}, {"entry", textOrNull(r, "entry")}});
    findings.push_back(finding("preload", "high", nullptr, -1,
                               fmt::format("{} in {}", str(r, "entry"), str(r, "source"))));
  }
  json hidden = json::array();
  for (const auto& r : jsonLines(text("artifacts/hidden_pids.jsonl"), &bad_lines)) {
    hidden.push_back({{"pid", intOrNull(r, "pid")}, {"comm", textOrNull(r, "comm")}});
    json f = finding("hidden_process", "high", nullptr, number(r, "pid"),
                     "answers a direct probe but is absent from the /proc listing");
    f["comm"] = textOrNull(r, "comm");
    findings.push_back(std::move(f));
  }
  // The taint mask: a non-negative integer, 0 when unknown.
  s["kernel_tainted"] = jsonUintOr(kernel, "tainted");

  // Collectors.
  uint64_t ok = 0;
  json failed_collectors = json::array();
  for (const auto& r : jsonLines(text("collection-log.jsonl"), &bad_lines)) {
    if (str(r, "status") == "ok") {
      ++ok;
      continue;
    }
    failed_collectors.push_back({{"collector", textOrNull(r, "collector")},
                                 {"status", textOrNull(r, "status")},
                                 {"error", textOrNull(r, "error")}});
    findings.push_back(
        finding("collector_failed", "medium", nullptr, -1,
                fmt::format("{}: {}: {}", str(r, "collector"), str(r, "status"), str(r, "error"))));
  }

  std::stable_sort(findings.begin(), findings.end(), [](const json& a, const json& b) {
    return severityRank(str(a, "severity")) < severityRank(str(b, "severity"));
  });
  json omitted = json::object();
  auto bounded = [&omitted](const char* name, json list) {
    if (list.size() > kMaxListed) {
      omitted[name] = list.size() - kMaxListed;
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(kMaxListed), list.end());
    }
    return list;
  };
  s["findings"] = bounded("findings", std::move(findings));
  s["deleted_executables"] = bounded("deleted_executables", std::move(deleted));
  s["remote_connections"] = bounded("remote_connections", std::move(remote));
  s["unexpected_listeners"] = bounded("unexpected_listeners", std::move(listeners));
  s["preload"] = bounded("preload", std::move(preload));
  s["hidden_pids"] = bounded("hidden_pids", std::move(hidden));
  s["recent_logins"] = bounded("recent_logins", std::move(s["recent_logins"]));
  s["collectors"] = {{"ok", ok}, {"failed", bounded("collectors", std::move(failed_collectors))}};
  s["unreadable_lines"] = bad_lines;
  if (!omitted.empty()) s["omitted"] = std::move(omitted);
  return s;
}

namespace {

// Text of a JSON value for display: strings bare, null as "-", the rest as JSON.
std::string show(const json& j, const char* key) {
  if (!j.is_object()) return "-";
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string utc(const json& ms) {
  if (!ms.is_number_integer()) return "-";
  time_t t = static_cast<time_t>(ms.get<int64_t>() / 1000);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const json& list(const json& s, const char* key) {
  static const json kEmpty = json::array();
  auto it = s.find(key);
  return it != s.end() && it->is_array() ? *it : kEmpty;
}

std::string kindText(const std::string& kind) {
  std::string out = kind;
  std::replace(out.begin(), out.end(), '_', ' ');
  return out;
}

}  // namespace

std::string renderSummary(const json& s) {
  if (!s.is_object()) return "no summary\n";
  std::string out = fmt::format("Capture {} of host {}, collected {}\n", show(s, "capture_id"),
                                show(s, "host_id"), utc(s.value("collected_at_unix_ms", json())));

  const json& findings = list(s, "findings");
  out += fmt::format("\nFindings ({})\n", findings.size());
  if (findings.empty()) out += "  none\n";
  for (const auto& f : findings) {
    std::string severity = show(f, "severity");
    for (char& c : severity) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::string who;
    if (f.contains("pid")) who += fmt::format("pid {} ", show(f, "pid"));
    if (f.contains("comm")) who += fmt::format("{} ", show(f, "comm"));
    if (f.contains("exe")) who += fmt::format("{} ", show(f, "exe"));
    out += fmt::format("  {:<6}  {}: {}{}\n", severity, kindText(show(f, "kind")), who,
                       show(f, "detail"));
  }

  const json& deleted = list(s, "deleted_executables");
  if (!deleted.empty()) {
    out += fmt::format("\nDeleted or memfd executables ({})\n", deleted.size());
    for (const auto& d : deleted) {
      out +=
          fmt::format("  pid {} {} {}\n    sha256 {}  recovered {}\n", show(d, "pid"),
                      show(d, "comm"), show(d, "exe"), show(d, "exe_sha256"), show(d, "recovered"));
    }
  }
  const json& remote = list(s, "remote_connections");
  out += fmt::format("\nConnections to other hosts ({})\n", remote.size());
  for (const auto& c : remote) {
    out += fmt::format("  {:<5} {} -> {}  {}  pid {} {} {}{}\n", show(c, "protocol"),
                       show(c, "local"), show(c, "remote"), show(c, "state"), show(c, "pid"),
                       show(c, "comm"), show(c, "exe"),
                       c.contains("note") ? fmt::format(" ({})", show(c, "note")) : "");
  }
  const json& listeners = list(s, "unexpected_listeners");
  out += fmt::format("\nListening sockets owned by unexpected processes ({})\n", listeners.size());
  for (const auto& l : listeners) {
    const std::string owner =
        l.value("pid", json()).is_null()
            ? std::string("no owner")
            : fmt::format("pid {} {} {}", show(l, "pid"), show(l, "comm"), show(l, "exe"));
    out += fmt::format("  {:<5} {}  {}: {}\n", show(l, "protocol"), show(l, "local"), owner,
                       show(l, "why"));
  }
  const json& logins = list(s, "recent_logins");
  out += fmt::format("\nRecent logins ({})\n", logins.size());
  for (const auto& l : logins) {
    out += fmt::format("  {}  {:<12} {:<8} from {}{}\n", utc(l.value("at_unix_ms", json())),
                       show(l, "user"), show(l, "line"), show(l, "from"),
                       jsonBoolOr(l, "current") ? "  (logged in)" : "");
  }
  const json failed = s.value("failed_logins", json::object());
  out += fmt::format("\nFailed logins: {}", show(failed, "count"));
  if (failed.is_object()) {
    const json& top = list(failed, "top_sources");
    for (size_t i = 0; i < top.size(); ++i) {
      out += fmt::format("{}{} ({})", i == 0 ? "; from " : ", ", show(top[i], "from"),
                         show(top[i], "count"));
    }
  }
  out += "\n";
  const json& preload = list(s, "preload");
  out += fmt::format("\nPreload entries ({})\n", preload.size());
  for (const auto& p : preload) {
    out += fmt::format("  {}  ({})\n", show(p, "entry"), show(p, "source"));
  }
  const json& hidden = list(s, "hidden_pids");
  out += fmt::format("\nHidden pids ({})\n", hidden.size());
  for (const auto& h : hidden) out += fmt::format("  pid {} {}\n", show(h, "pid"), show(h, "comm"));
  out += fmt::format("\nKernel taint: {}\n", show(s, "kernel_tainted"));
  const json collectors = s.value("collectors", json::object());
  const json& failed_collectors = list(collectors, "failed");
  out += fmt::format("\nCollectors: {} ok, {} not ok\n", show(collectors, "ok"),
                     failed_collectors.size());
  for (const auto& c : failed_collectors) {
    out += fmt::format("  {}: {}: {}\n", show(c, "collector"), show(c, "status"), show(c, "error"));
  }
  if (auto it = s.find("omitted"); it != s.end() && it->is_object() && !it->empty()) {
    out += fmt::format("\nNot shown (at most {} entries per list):", kMaxListed);
    for (const auto& [list_name, count] : it->items()) {
      out += fmt::format(" {} more {};", count.dump(), kindText(list_name));
    }
    out += "\n";
  }
  return out;
}

}  // namespace bulkhead::evidence
