// Persistence collector: where an intruder makes a foothold survive: accounts (passwd, group;
// never shadow), SSH authorized_keys, crontabs, systemd units and timers (system, runtime,
// transient, per-user), sudoers, and shell histories. Every file goes through
// readRegularFile (stat first, O_NONBLOCK, fstat): a FIFO or device planted as
// .bash_history is a warning, never a hang.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "agent/collect/collectors.h"
#include "agent/collect/host_files.h"
#include "agent/linux/proc_files.h"
#include "common/format.h"

namespace bulkhead::agent::collect {
namespace {

constexpr uint64_t kAccountsCap = 16 * kMiB;
constexpr uint64_t kConfigCap = 256 * 1024;  // crontabs, sudoers
constexpr uint64_t kUnitCap = 16 * 1024;     // systemd unit content
constexpr uint64_t kKeysCap = 1 * kMiB;      // authorized_keys
constexpr uint64_t kHistoryCap = 64 * 1024;  // the last 64 KiB of a history

struct Home {
  std::string user;
  std::string dir;  // as on the host ("/home/u")
};

// The sink refused a record: the collector stops and returns (partial output is kept).
class Refused {};

class Emitter {
 public:
  Emitter(const CollectContext& ctx, ArtifactSink& sink) : ctx_(ctx), sink_(sink) {}

  const CollectContext& ctx() const { return ctx_; }
  ArtifactSink& sink() { return sink_; }

  void record(std::string_view artifact, const nlohmann::json& r) {
    if (!sink_.record(artifact, r)) throw Refused();
  }
  void checkStopped() {
    if (sink_.stopped()) throw Refused();
  }

  // Reads `host_path` below the root; a warning (unless it does not exist) and nullopt when
  // it cannot be read as a regular file. `follow` false: a symlink is not followed.
  std::optional<FileBytes> read(const std::string& host_path, uint64_t cap, bool tail = false,
                                bool follow = true) {
    checkStopped();
    auto f = readRegularFile(underRoot(ctx_.root, host_path), cap, tail, follow);
    if (absl::IsNotFound(f.status())) return std::nullopt;
    if (!f.ok()) {
      sink_.warn(fmt::format("{}", f.status()));
      return std::nullopt;
    }
    return *std::move(f);
  }

  // Reads `host_path` in the home `home_dir`, where the user controls every component below
  // the home (readUserFile). A symlink among them is evidence and is recorded to `artifact`
  // as `extra` + {path (the link), link_target, mtime_unix_ms, owner_uid, and requested_path
  // when the link is a directory on the way}; its target (maybe /etc/shadow or /root/.ssh) is
  // never read. nullopt then, or when the file cannot be read (a warning unless missing).
  std::optional<FileBytes> readUser(std::string_view artifact, const std::string& home_dir,
                                    const std::string& host_path, uint64_t cap, bool tail,
                                    nlohmann::json extra) {
    checkStopped();
    std::optional<SymlinkOnPath> link;
    auto f = readUserFile(ctx_.root, home_dir, host_path, cap, tail, &link);
    if (link) {
      nlohmann::json& r = extra;
      putText(r, "path", link->host_path);
      putText(r, "link_target", link->target);
      r["mtime_unix_ms"] = mtimeMs(link->st);
      r["owner_uid"] = link->st.st_uid;
      if (link->host_path != host_path) putText(r, "requested_path", host_path);
      record(artifact, r);
      return std::nullopt;
    }
    if (absl::IsNotFound(f.status())) return std::nullopt;
    if (!f.ok()) {
      sink_.warn(fmt::format("{}", f.status()));
      return std::nullopt;
    }
    return *std::move(f);
  }

  // Emits {path, mtime_unix_ms, content, truncated} + `extra` for one file to `artifact`.
  // `home_dir` set: the file is in that home and read with readUser (symlinks recorded, never
  // followed).
  void contentRecord(std::string_view artifact, const std::string& host_path, uint64_t cap,
                     nlohmann::json extra = nlohmann::json::object(), bool tail = false,
                     const std::string& home_dir = "") {
    auto f = home_dir.empty() ? read(host_path, cap, tail)
                              : readUser(artifact, home_dir, host_path, cap, tail, extra);
    if (!f) return;
    nlohmann::json& r = extra;
    putText(r, "path", host_path);
    r["mtime_unix_ms"] = mtimeMs(f->st);
    r["size"] = static_cast<int64_t>(f->st.st_size);
    r["owner_uid"] = f->st.st_uid;
    putText(r, "content", f->bytes);
    r["truncated"] = f->truncated;
    record(artifact, r);
  }

  // Names in the host directory `host_dir` (sorted); a warning when it cannot be listed.
  std::vector<std::string> list(const std::string& host_dir) {
    auto names = listDir(underRoot(ctx_.root, host_dir));
    if (!names.ok()) {
      sink_.warn(fmt::format("{}", names.status()));
      return {};
    }
    return *std::move(names);
  }

 private:
  const CollectContext& ctx_;
  ArtifactSink& sink_;
};

std::string joinPath(const std::string& dir, std::string_view name) {
  return dir.ends_with('/') ? fmt::format("{}{}", dir, name) : fmt::format("{}/{}", dir, name);
}

nlohmann::json number(std::string_view text) {
  int64_t v = 0;
  if (absl::SimpleAtoi(absl::string_view(text.data(), text.size()), &v)) return v;
  return nullptr;
}

std::vector<std::string_view> splitColons(std::string_view line) {
  std::vector<std::string_view> f;
  size_t start = 0;
  for (;;) {
    size_t c = line.find(':', start);
    f.push_back(line.substr(start, c == std::string_view::npos ? c : c - start));
    if (c == std::string_view::npos) return f;
    start = c + 1;
  }
}

// Calls `each(fields)` for every non-blank, non-comment line of the colon-separated file
// `host_path` (passwd, group) that has at least `min_fields` fields; warns about the others.
template <typename Fn>
void forEachColonLine(Emitter& em, const std::string& host_path, size_t min_fields, Fn each) {
  auto f = em.read(host_path, kAccountsCap);
  if (!f) return;
  if (f->truncated) em.sink().warn(fmt::format("{}: over 16 MiB, the rest not read", host_path));
  for (std::string_view line : splitLines(f->bytes)) {
    em.checkStopped();
    if (trimBlanks(line).empty() || line.front() == '#') continue;
    std::vector<std::string_view> fields = splitColons(line);
    if (fields.size() < min_fields) {
      em.sink().warn(
          fmt::format("{}: malformed line \"{}\"", host_path, proc::utf8(line.substr(0, 200))));
      continue;
    }
    each(fields);
  }
}

// accounts.jsonl from /etc/passwd and /etc/group; returns the homes to search (one per
// directory, first user wins; /root always).
std::vector<Home> emitAccounts(Emitter& em) {
  std::vector<Home> homes;
  std::set<std::string> seen;
  forEachColonLine(em, "/etc/passwd", 7, [&](const std::vector<std::string_view>& p) {
    nlohmann::json r;
    r["source"] = "passwd";
    putText(r, "name", p[0]);
    r["id"] = number(p[2]);
    r["gid"] = number(p[3]);
    putText(r, "gecos", p[4]);
    putText(r, "home", p[5]);
    putText(r, "shell", p[6]);
    em.record("accounts.jsonl", r);
    if (!p[5].empty() && p[5].front() == '/' && seen.insert(std::string(p[5])).second) {
      homes.push_back({std::string(p[0]), std::string(p[5])});
    }
  });
  if (seen.insert("/root").second) homes.push_back({"root", "/root"});
  forEachColonLine(em, "/etc/group", 4, [&](const std::vector<std::string_view>& g) {
    nlohmann::json r;
    r["source"] = "group";
    putText(r, "name", g[0]);
    r["id"] = number(g[2]);
    r["gid"] = number(g[2]);
    nlohmann::json members = nlohmann::json::array();
    std::string_view list = g[3];
    while (!list.empty()) {
      size_t comma = list.find(',');
      std::string_view m = trimBlanks(list.substr(0, comma));
      if (!m.empty()) members.push_back(proc::utf8(m));
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
    r["members"] = std::move(members);
    em.record("accounts.jsonl", r);
  });
  return homes;
}

// The AuthorizedKeysFile patterns of sshd_config and its sshd_config.d/*.conf drop-ins (every
// occurrence, Match blocks included: an intruder may add one), beside sshd's defaults.
std::vector<std::string> authorizedKeysPatterns(Emitter& em) {
  std::vector<std::string> patterns = {".ssh/authorized_keys", ".ssh/authorized_keys2"};
  std::vector<std::string> configs = {"/etc/ssh/sshd_config"};
  for (const std::string& n : em.list("/etc/ssh/sshd_config.d")) {
    if (n.ends_with(".conf")) configs.push_back(joinPath("/etc/ssh/sshd_config.d", n));
  }
  for (const std::string& config : configs) {
    auto f = em.read(config, kConfigCap);
    if (!f) continue;
    for (std::string_view line : splitLines(f->bytes)) {
      std::string_view t = trimBlanks(line);
      constexpr std::string_view kKey = "authorizedkeysfile";
      if (t.size() <= kKey.size()) continue;
      std::string lower(t.substr(0, kKey.size()));
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower != kKey ||
          (t[kKey.size()] != ' ' && t[kKey.size()] != '\t' && t[kKey.size()] != '=')) {
        continue;
      }
      std::string_view values = t.substr(kKey.size() + 1);
      while (!values.empty()) {
        values = trimBlanks(values);
        size_t end = values.find_first_of(" \t");
        std::string_view v = values.substr(0, end);
        if (!v.empty() && v != "none" && v != "=" &&
            std::find(patterns.begin(), patterns.end(), v) == patterns.end()) {
          patterns.emplace_back(v);
        }
        if (end == std::string_view::npos) break;
        values.remove_prefix(end);
      }
    }
  }
  return patterns;
}

// sshd's tokens: %h home, %u user, %U uid is not known here (left as is), %% a percent sign;
// a relative path is below the home.
std::string expandKeysPattern(const std::string& pattern, const Home& h) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      switch (pattern[++i]) {
        case 'h': out += h.dir; break;
        case 'u': out += h.user; break;
        case '%': out += '%'; break;
        default: out += pattern.substr(i - 1, 2);
      }
      continue;
    }
    out += pattern[i];
  }
  return out.starts_with('/') ? out : joinPath(h.dir, out);
}

bool inHome(const std::string& host_path, const Home& h) {
  return host_path.starts_with(h.dir.ends_with('/') ? h.dir : h.dir + "/");
}

void emitAuthorizedKeys(Emitter& em, const std::vector<Home>& homes) {
  const std::vector<std::string> patterns = authorizedKeysPatterns(em);
  std::set<std::pair<std::string, std::string>> done;  // (user, path)
  for (const Home& h : homes) {
    for (const std::string& pattern : patterns) {
      const std::string path = expandKeysPattern(pattern, h);
      if (!done.insert({h.user, path}).second) continue;
      nlohmann::json link;
      putText(link, "user", h.user);
      link["line_no"] = nullptr;
      link["line"] = nullptr;
      // Keys files in the home are the user's whole path; elsewhere (an AuthorizedKeysFile
      // such as /etc/ssh/keys/%u) only the last component is.
      auto f = inHome(path, h) ? em.readUser("authorized_keys.jsonl", h.dir, path, kKeysCap,
                                             /*tail=*/false, std::move(link))
                               : em.read(path, kKeysCap, /*tail=*/false, /*follow=*/false);
      if (!f) continue;
      if (f->truncated) em.sink().warn(fmt::format("{}: over 1 MiB, the rest not read", path));
      int line_no = 0;
      for (std::string_view line : splitLines(f->bytes)) {
        ++line_no;
        std::string_view t = trimBlanks(line);
        if (t.empty() || t.front() == '#') continue;
        nlohmann::json r;
        putText(r, "user", h.user);
        putText(r, "path", path);
        r["line_no"] = line_no;
        putText(r, "line", t);
        r["mtime_unix_ms"] = mtimeMs(f->st);
        r["owner_uid"] = f->st.st_uid;
        em.record("authorized_keys.jsonl", r);
      }
    }
  }
}

void emitCrontabs(Emitter& em) {
  auto crontab = [&](const std::string& path, nlohmann::json user) {
    nlohmann::json extra;
    extra["user"] = std::move(user);
    em.contentRecord("crontabs.jsonl", path, kConfigCap, std::move(extra));
  };
  // System crontabs name the user on each line: `user` is null.
  crontab("/etc/crontab", nullptr);
  crontab("/etc/anacrontab", nullptr);
  for (const std::string& n : em.list("/etc/cron.d")) crontab(joinPath("/etc/cron.d", n), nullptr);
  for (const char* period : {"hourly", "daily", "weekly", "monthly"}) {
    const std::string dir = fmt::format("/etc/cron.{}", period);
    for (const std::string& n : em.list(dir)) crontab(joinPath(dir, n), "root");
  }
  // Debian: /var/spool/cron/crontabs/USER; Red Hat: /var/spool/cron/USER.
  for (const std::string& n : em.list("/var/spool/cron/crontabs")) {
    crontab(joinPath("/var/spool/cron/crontabs", n), n);
  }
  for (const std::string& n : em.list("/var/spool/cron")) {
    if (n == "crontabs" || n == "atjobs" || n == "atspool") continue;
    crontab(joinPath("/var/spool/cron", n), n);
  }
}

void emitSudoers(Emitter& em) {
  em.contentRecord("sudoers.jsonl", "/etc/sudoers", kConfigCap);
  for (const std::string& n : em.list("/etc/sudoers.d")) {
    em.contentRecord("sudoers.jsonl", joinPath("/etc/sudoers.d", n), kConfigCap);
  }
}

// "service", "timer", ... from the file name; "dropin" for NAME.d/*.conf; null without one.
nlohmann::json unitKind(const std::string& host_path) {
  const std::filesystem::path p(host_path);
  const std::string name = p.filename().string();
  const std::string parent = p.parent_path().filename().string();
  if (parent.ends_with(".d") && name.ends_with(".conf")) return "dropin";
  size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot + 1 == name.size()) return nullptr;
  return name.substr(dot + 1);
}

class UnitLister {
 public:
  explicit UnitLister(Emitter& em) : em_(em) {}

  // Every unit file below `host_dir` (recursively: *.wants/, *.d/ drop-ins), symlinks with
  // their target. `only_suffix` limits the listing to one kind (vendor timers).
  // `home_dir` set: a unit directory in that home, whose symlinks (on the way to it too) are
  // listed but never followed or read (they may point at /etc/shadow).
  void tree(const std::string& host_dir, int max_depth, std::string_view only_suffix = {},
            const std::string& home_dir = "") {
    WalkLimits limits;
    limits.max_depth = max_depth;
    limits.max_entries = 20000;
    limits.trusted_dir = home_dir;
    bool refused = false;
    WalkResult w = walkTree(
        em_.ctx().root, host_dir, limits,
        [&](const WalkEntry& e) {
          if (S_ISDIR(e.st.st_mode)) return true;
          if (!only_suffix.empty() && !e.host_path.ends_with(only_suffix)) return true;
          try {
            unit(e, home_dir);
          } catch (const Refused&) {
            refused = true;
          }
          return !refused;
        },
        [&](const std::string& m) { em_.sink().warn(m); }, [&] { return em_.sink().stopped(); });
    if (refused) throw Refused();
    em_.checkStopped();
    if (w.cut) em_.sink().warn(fmt::format("{}: listing cut at {} entries", host_dir, 20000));
  }

 private:
  void unit(const WalkEntry& e, const std::string& home_dir) {
    const bool user_owned = !home_dir.empty();
    // /lib is /usr/lib on merged-/usr systems: one record per file.
    if (S_ISREG(e.st.st_mode) && !seen_.insert({e.st.st_dev, e.st.st_ino}).second) return;
    nlohmann::json r;
    putText(r, "path", e.host_path);
    putText(r, "name", std::filesystem::path(e.host_path).filename().string());
    r["kind"] = unitKind(e.host_path);
    r["mtime_unix_ms"] = mtimeMs(e.st);
    r["owner_uid"] = e.st.st_uid;
    std::string content_path;
    if (S_ISLNK(e.st.st_mode)) {
      putText(r, "link_target", e.link_target);
      // A link to a vendor unit (enablement) or /dev/null (masked) says all; a link to a unit
      // elsewhere (`systemctl link /opt/x.service`) is read, resolved below the root.
      const std::string& t = e.link_target;
      // Links into the directories listed here anyway are not read twice.
      if (!user_owned && !t.starts_with("/usr/lib/systemd/") && !t.starts_with("/lib/systemd/") &&
          !t.starts_with("/etc/systemd/") && t != "/dev/null") {
        content_path = t.starts_with('/') ? t
                                          : (std::filesystem::path(e.host_path).parent_path() / t)
                                                .lexically_normal()
                                                .string();
      }
    } else if (S_ISREG(e.st.st_mode)) {
      content_path = e.host_path;
    } else {
      r["type"] = std::string(fileTypeName(e.st.st_mode));
    }
    if (!content_path.empty()) {
      std::optional<FileBytes> f;
      if (user_owned) {
        // Read again by path: a component swapped for a symlink since the walk is not followed.
        std::optional<SymlinkOnPath> link;
        auto got = readUserFile(em_.ctx().root, home_dir, content_path, kUnitCap, false, &link);
        if (got.ok()) {
          f = *std::move(got);
        } else if (!absl::IsNotFound(got.status())) {
          em_.sink().warn(fmt::format("{}", got.status()));
        }
      } else {
        f = em_.read(content_path, kUnitCap);
      }
      if (f) {
        putText(r, "content", f->bytes);
        r["truncated"] = f->truncated;
      }
    }
    em_.record("systemd_units.jsonl", r);
  }

  Emitter& em_;
  std::set<std::pair<dev_t, ino_t>> seen_;
};

void emitUnits(Emitter& em, const std::vector<Home>& homes) {
  UnitLister units(em);
  units.tree("/etc/systemd/system", 4);
  units.tree("/run/systemd/system", 4);
  units.tree("/run/systemd/transient", 2);  // systemd-run units and timers
  units.tree("/etc/systemd/user", 4);
  for (const Home& h : homes) {
    units.tree(joinPath(h.dir, ".config/systemd/user"), 4, {}, h.dir);
  }
  units.tree("/usr/lib/systemd/system", 1, ".timer");
  units.tree("/lib/systemd/system", 1, ".timer");
}

void emitHistories(Emitter& em, const std::vector<Home>& homes) {
  constexpr const char* kFiles[] = {".bash_history", ".zsh_history", ".sh_history",
                                    ".ash_history",  ".history",     ".python_history",
                                    ".mysql_history"};
  for (const Home& h : homes) {
    for (const char* file : kFiles) {
      nlohmann::json extra;
      putText(extra, "user", h.user);
      em.contentRecord("shell_history.jsonl", joinPath(h.dir, file), kHistoryCap, std::move(extra),
                       /*tail=*/true, h.dir);
    }
  }
}

class PersistenceCollector final : public Collector {
 public:
  std::string_view name() const override { return "persistence"; }
  std::chrono::milliseconds timeLimit() const override { return std::chrono::seconds(20); }

  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    Emitter em(ctx, sink);
    try {
      const std::vector<Home> homes = emitAccounts(em);
      emitAuthorizedKeys(em, homes);
      emitCrontabs(em);
      emitUnits(em, homes);
      emitSudoers(em);
      emitHistories(em, homes);
    } catch (const Refused&) {
      // Size cap or time limit: what was written stays; the engine reports which.
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Collector> makePersistenceCollector() {
  return std::make_unique<PersistenceCollector>();
}

}  // namespace bulkhead::agent::collect
