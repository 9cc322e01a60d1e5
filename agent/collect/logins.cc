// Login collector: logind's session state files (no D-Bus) and the utmp, wtmp and btmp
// accounting files, read directly as arrays of `struct utmp` (getutent is not thread-safe).
#include <arpa/inet.h>
#include <fmt/format.h>
#include <utmp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "agent/collect/collectors.h"
#include "agent/collect/host_files.h"
#include "agent/collect/login_records.h"
#include "common/format.h"

namespace bulkhead::agent::collect {
namespace {

// Records kept from the end of each accounting file (wtmp grows for years).
constexpr size_t kMaxUtmpRecords = 5000;
constexpr uint64_t kSessionFileCap = 64 * 1024;

std::string utmpTypeName(int type) {
  switch (type) {
    case EMPTY: return "empty";
    case RUN_LVL: return "run_lvl";
    case BOOT_TIME: return "boot_time";
    case NEW_TIME: return "new_time";
    case OLD_TIME: return "old_time";
    case INIT_PROCESS: return "init_process";
    case LOGIN_PROCESS: return "login_process";
    case USER_PROCESS: return "user_process";
    case DEAD_PROCESS: return "dead_process";
    case ACCOUNTING: return "accounting";
    default: return fmt::format("unknown_{}", type);
  }
}

// A fixed-width, not necessarily NUL-terminated utmp field.
template <size_t N>
std::string_view field(const char (&f)[N]) {
  return std::string_view(f, strnlen(f, N));
}

// ut_addr_v6 in network order: IPv4 when only the first word is set; null when all are zero.
nlohmann::json utmpAddress(const int32_t (&a)[4]) {
  if (a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 0) return nullptr;
  char buf[INET6_ADDRSTRLEN];
  const bool v4 = a[1] == 0 && a[2] == 0 && a[3] == 0;
  if (inet_ntop(v4 ? AF_INET : AF_INET6, a, buf, sizeof buf) == nullptr) return nullptr;
  return std::string(buf);
}

nlohmann::json recordOfUtmp(const struct utmp& u) {
  nlohmann::json r;
  r["type"] = utmpTypeName(u.ut_type);
  putText(r, "user", field(u.ut_user));
  putText(r, "line", field(u.ut_line));
  putText(r, "host", field(u.ut_host));
  putText(r, "id", field(u.ut_id));
  r["pid"] = u.ut_pid;
  r["session"] = u.ut_session;
  r["address"] = utmpAddress(u.ut_addr_v6);
  r["at_unix_ms"] = static_cast<int64_t>(u.ut_tv.tv_sec) * 1000 + u.ut_tv.tv_usec / 1000;
  if (u.ut_type == DEAD_PROCESS) r["exit_status"] = u.ut_exit.e_exit;
  return r;
}

// Emits the last kMaxUtmpRecords records of the first of `host_paths` that exists.
// False once the sink refuses (stop).
bool emitUtmpFile(const CollectContext& ctx, ArtifactSink& sink,
                  std::initializer_list<std::string_view> host_paths, std::string_view artifact) {
  for (std::string_view host_path : host_paths) {
    auto f = readRegularFile(underRoot(ctx.root, host_path), kMaxUtmpRecords * sizeof(utmp),
                             /*tail=*/true);
    if (absl::IsNotFound(f.status())) continue;
    if (!f.ok()) {
      sink.warn(fmt::format("{}: {}", artifact, f.status()));
      return true;
    }
    std::string_view bytes = f->bytes;
    // A tail read may start inside a record: realign on the record size from the file's end.
    const uint64_t size = static_cast<uint64_t>(f->st.st_size);
    if (size % sizeof(utmp) != 0) {
      sink.warn(
          fmt::format("{}: size {} is not a multiple of the record size {}; trailing "
                      "{} bytes ignored",
                      host_path, size, sizeof(utmp), size % sizeof(utmp)));
      bytes.remove_suffix(std::min<size_t>(bytes.size(), size % sizeof(utmp)));
    }
    bytes.remove_prefix(bytes.size() % sizeof(utmp));
    if (f->truncated) {
      sink.warn(fmt::format("{}: {} records, only the last {} kept", host_path, size / sizeof(utmp),
                            kMaxUtmpRecords));
    }
    for (size_t off = 0; off + sizeof(utmp) <= bytes.size(); off += sizeof(utmp)) {
      if (sink.stopped()) return false;
      struct utmp u;
      std::memcpy(&u, bytes.data() + off, sizeof u);
      nlohmann::json r = recordOfUtmp(u);
      r["source"] = std::string(host_path);
      if (!sink.record(artifact, r)) return false;
    }
    return true;
  }
  return true;
}

}  // namespace

nlohmann::json utmpRecord(std::string_view record) {
  struct utmp u {};
  std::memcpy(&u, record.data(), std::min(record.size(), sizeof u));
  return recordOfUtmp(u);
}

nlohmann::json sessionRecord(std::string_view id, std::string_view text) {
  nlohmann::json r;
  putText(r, "id", id);
  for (std::string_view line : splitLines(text)) {
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = line.substr(0, eq);
    std::string_view value = line.substr(eq + 1);
    // Text fields as logind writes them; LEADER and UID as numbers; REALTIME in microseconds.
    static constexpr std::pair<std::string_view, const char*> kText[] = {
        {"USER", "user"},
        {"REMOTE_HOST", "remote_host"},
        {"REMOTE_USER", "remote_user"},
        {"TTY", "tty"},
        {"SERVICE", "service"},
        {"STATE", "state"},
        {"CLASS", "class"},
        {"TYPE", "type"},
        {"SCOPE", "scope"}};
    int64_t v = 0;
    const bool is_number = absl::SimpleAtoi(absl::string_view(value.data(), value.size()), &v);
    if (key == "UID" || key == "LEADER") {
      const char* name = key == "UID" ? "uid" : "leader";
      if (is_number) {
        r[name] = v;
      } else {
        putText(r, name, value);
      }
    } else if (key == "REALTIME" && is_number) {
      r["started_at_unix_ms"] = v / 1000;
    } else if (key == "REMOTE") {
      r["remote"] = value == "1";
    } else {
      for (const auto& [k, name] : kText) {
        if (key == k) putText(r, name, value);
      }
    }
  }
  return r;
}

namespace {

bool emitSessions(const CollectContext& ctx, ArtifactSink& sink) {
  const std::filesystem::path dir = underRoot(ctx.root, "/run/systemd/sessions");
  auto names = listDir(dir);
  if (!names.ok()) {
    sink.warn(fmt::format("logind sessions: {}", names.status()));
    return true;
  }
  for (const std::string& n : *names) {
    if (sink.stopped()) return false;
    // "N.ref" are logind's session FIFOs, ".#..." its temporary files.
    if (n.front() == '.' || n.ends_with(".ref")) continue;
    auto f = readRegularFile(dir / n, kSessionFileCap);
    if (absl::IsNotFound(f.status())) continue;  // session ended meanwhile
    if (!f.ok()) {
      sink.warn(fmt::format("logind session {}: {}", n, f.status()));
      continue;
    }
    if (!sink.record("logind_sessions.jsonl", sessionRecord(n, f->bytes))) return false;
  }
  return true;
}

class LoginCollector final : public Collector {
 public:
  std::string_view name() const override { return "logins"; }

  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    if (!emitSessions(ctx, sink)) return absl::OkStatus();
    if (!emitUtmpFile(ctx, sink, {"/run/utmp", "/var/run/utmp"}, "utmp.jsonl")) {
      return absl::OkStatus();
    }
    if (!emitUtmpFile(ctx, sink, {"/var/log/wtmp"}, "wtmp.jsonl")) return absl::OkStatus();
    emitUtmpFile(ctx, sink, {"/var/log/btmp"}, "btmp.jsonl");
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Collector> makeLoginCollector() { return std::make_unique<LoginCollector>(); }

}  // namespace bulkhead::agent::collect
