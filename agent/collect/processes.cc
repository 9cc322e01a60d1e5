// processes.jsonl, binaries/<sha256>, hidden_pids.jsonl (evidence/README.md).
//
// One pass over the numeric directories of ctx.proc_root. Each process is read relative to a
// directory fd of /proc/PID, so a pid that exits mid-read fails its reads (skipped silently)
// instead of a reused pid answering them. Executables are hashed once per (device, inode);
// deleted and memfd executables are copied into the bundle through /proc/PID/exe, which
// still reads the unlinked file. Hidden pids (answering kill(pid, 0) but absent from the
// listing, as with a getdents-hooking rootkit) are probed only on the real /proc.
#include "agent/core/processes.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "agent/collect/collectors.h"
#include "agent/linux/proc_files.h"
#include "agent/linux/proc_scan.h"
#include "common/format.h"

namespace bulkhead::agent::collect {
namespace {

using nlohmann::json;

constexpr size_t kStatCap = 4096;
constexpr size_t kStatusCap = 1 << 20;  // "Groups:" (before "Threads:") may be long
constexpr size_t kCmdlineCap = 64 * 1024;
constexpr size_t kEnvironCap = 8 * 1024;  // README: environ is capped
constexpr int kHiddenProbeMargin = 32768;
constexpr std::chrono::milliseconds kHiddenProbeBudget{500};

struct ExeKey {
  uint64_t dev = 0;
  uint64_t ino = 0;
  bool operator==(const ExeKey& o) const { return dev == o.dev && ino == o.ino; }
};
struct ExeKeyHash {
  size_t operator()(const ExeKey& k) const {
    return std::hash<uint64_t>()(k.ino * 1000003u ^ k.dev);
  }
};

// What is known of one executable file, shared by every process running it.
struct ExeInfo {
  bool hash_tried = false;
  json sha256 = nullptr;  // hex, or null when it could not be read
  bool recovery_tried = false;
  json recovered = nullptr;  // "binaries/<sha256>"
  bool truncated = false;
};

// One collect() call: caches and buffers live here, not in globals (see collector.h).
class ProcessScan {
 public:
  ProcessScan(const CollectContext& ctx, ArtifactSink& sink, int proc_fd)
      : ctx_(ctx), sink_(sink), proc_fd_(proc_fd) {
    long t = ::sysconf(_SC_CLK_TCK);
    ticks_ = t > 0 ? static_cast<uint64_t>(t) : 100;
    if (proc::readFileAt(proc_fd_, "stat", 1 << 20, &buf_)) {
      if (auto b = proc::parseBootTime(buf_)) btime_ms_ = *b * 1000;
    }
    if (!btime_ms_) sink_.warn(fmt::format("no btime in {}/stat", ctx_.proc_root.string()));
  }

  absl::Status run() {
    std::optional<int64_t> listed_at_ms;
    if (proc::readFileAt(proc_fd_, "uptime", 4096, &buf_)) listed_at_ms = proc::parseUptimeMs(buf_);
    std::vector<int> pids;
    if (!proc::forEachNumericEntry(proc_fd_, ".", [&](int pid, const char*) {
          pids.push_back(pid);
          return true;
        })) {
      return absl::UnavailableError(
          fmt::format("cannot list {}: {}", ctx_.proc_root.string(), std::strerror(errno)));
    }
    // The hidden pid probe's kill() calls (about 0.15 s: a pid namespace's margin is 32,768
    // pids) run beside the scan on a thread of their own, joined before this returns.
    std::optional<HiddenProbe> probe;
    if (ctx_.proc_root == "/proc") probe = prepareHiddenProbe(pids);
    ProbeThread prober;
    if (probe) {
      try {
        prober.thread =
            std::thread([&probe, &stop = prober.stop] { probeCandidates(&*probe, stop); });
      } catch (const std::system_error&) {
        probeCandidates(&*probe, prober.stop);  // no thread to spare: probed here, first
      }
    }
    for (int pid : pids) {
      if (sink_.stopped()) return absl::OkStatus();
      std::optional<json> r = readProcess(pid);
      if (!r) continue;  // exited meanwhile
      if (!sink_.record("processes.jsonl", *r)) return absl::OkStatus();
    }
    prober.join();
    if (probe) recordHidden(*probe, listed_at_ms);
    return absl::OkStatus();
  }

 private:
  // What the hidden pid probe works on: the pids 1..limit, those listed marked.
  struct HiddenProbe {
    int limit = 0;
    std::vector<bool> listed;
    std::vector<int> candidates;  // found by kill(), not listed; newest first
    int cut_at = 0;               // when the time budget cut the probe: the lowest pid probed
  };

  // The probe's thread; its destructor (an early return) stops the probe and joins it.
  struct ProbeThread {
    std::thread thread;
    std::atomic<bool> stop{false};
    void join() {
      if (thread.joinable()) thread.join();
    }
    ~ProbeThread() {
      stop = true;
      join();
    }
  };

  // The per-process files: two system calls fewer per file on procfs (readPidFileAt), the
  // checked read elsewhere (a fixture tree).
  bool readPidFile(int dir, const char* name, size_t cap) {
    return on_procfs_ ? proc::readPidFileAt(dir, name, cap, &buf_)
                      : proc::readFileAt(dir, name, cap, &buf_);
  }

  std::optional<json> readProcess(int pid) {
    char name[16];
    std::snprintf(name, sizeof name, "%d", pid);
    proc::ScopedFd dir = proc::openDir(proc_fd_, name);
    if (!dir.ok() || !readPidFile(dir.get(), "stat", kStatCap)) return std::nullopt;
    auto st = parseProcStat(buf_);
    if (!st.ok()) {
      sink_.warn(fmt::format("pid {}: {}", pid, st.status()));
      return std::nullopt;
    }
    if (!readPidFile(dir.get(), "status", kStatusCap)) return std::nullopt;
    ProcStatus status = parseProcStatus(buf_);

    json r;
    r["pid"] = pid;
    r["ppid"] = status.ppid >= 0 ? status.ppid : st->ppid;
    r["comm"] = proc::utf8(st->comm);
    r["cmdline"] =
        readPidFile(dir.get(), "cmdline", kCmdlineCap) ? proc::splitNul(buf_) : json::array();
    r["state"] = std::string(1, st->state);
    r["uid"] = status.uid ? json(*status.uid) : json(nullptr);
    r["euid"] = status.euid ? json(*status.euid) : json(nullptr);
    r["gid"] = status.gid ? json(*status.gid) : json(nullptr);
    r["user"] = status.uid ? userName(*status.uid) : json(nullptr);
    r["loginuid"] = auditId(dir.get(), "loginuid");
    r["sessionid"] = auditId(dir.get(), "sessionid");
    auto tty = proc::ttyOrNone(st->tty_nr);
    r["tty"] = tty ? json(*tty) : json(nullptr);
    r["start_time_unix_ms"] =
        btime_ms_ ? json(*btime_ms_ + static_cast<int64_t>(st->start_ticks * 1000 / ticks_))
                  : json(nullptr);
    r["threads"] = status.threads >= 0 ? json(status.threads) : json(nullptr);
    addExe(pid, dir.get(), &r);
    r["cwd"] = link(dir.get(), "cwd");
    r["root"] = link(dir.get(), "root");
    r["environ"] =
        readPidFile(dir.get(), "environ", kEnvironCap) ? proc::splitNul(buf_) : json(nullptr);
    return r;
  }

  // exe, exe_deleted, exe_memfd, exe_sha256, exe_dev, exe_inode, exe_size, recovered,
  // recovered_truncated.
  void addExe(int pid, int dir, json* r) {
    json& out = *r;
    out["exe"] = nullptr;
    out["exe_deleted"] = false;
    out["exe_memfd"] = false;
    out["exe_sha256"] = nullptr;
    out["exe_dev"] = nullptr;
    out["exe_inode"] = nullptr;
    out["exe_size"] = nullptr;
    out["recovered"] = nullptr;
    out["recovered_truncated"] = false;
    std::optional<std::string> target = proc::readLinkAt(dir, "exe");
    if (!target) return;  // kernel thread, or exited
    proc::LinkFlags flags = proc::linkFlags(*target);
    out["exe"] = proc::utf8(*target);
    out["exe_deleted"] = flags.deleted;
    out["exe_memfd"] = flags.memfd;
    struct stat st {};
    if (::fstatat(dir, "exe", &st, 0) != 0) {
      sink_.warn(fmt::format("pid {}: cannot stat exe {}: {}", pid, proc::utf8(*target),
                             std::strerror(errno)));
      return;
    }
    out["exe_dev"] = static_cast<uint64_t>(st.st_dev);
    out["exe_inode"] = static_cast<uint64_t>(st.st_ino);
    out["exe_size"] = static_cast<int64_t>(st.st_size);
    ExeInfo& info =
        exes_[ExeKey{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)}];
    if (!info.hash_tried) {
      // The one costly step of the scan: each distinct executable is read once. Not on FUSE:
      // a user-space file system run by the intruder could stall the read forever.
      info.hash_tried = true;
      const std::string exe_path = fmt::format("{}/{}/exe", ctx_.proc_root.string(), pid);
      struct statfs fs {};
      if (::statfs(exe_path.c_str(), &fs) == 0 && fs.f_type == FUSE_SUPER_MAGIC) {
        sink_.warn(fmt::format("pid {}: exe {} is on a FUSE file system: not hashed or recovered",
                               pid, proc::utf8(*target)));
      } else if (auto sha = sha256OfFile(exe_path); sha.ok()) {
        info.sha256 = *sha;
      } else {
        sink_.warn(fmt::format("pid {}: exe not hashed: {}", pid, sha.status()));
      }
    }
    out["exe_sha256"] = info.sha256;
    if ((flags.deleted || flags.memfd) && info.sha256.is_string()) recover(pid, dir, &info);
    out["recovered"] = info.recovered;
    out["recovered_truncated"] = info.truncated;
  }

  // Copies a deleted or memfd executable into the bundle as binaries/<sha256> (once).
  void recover(int pid, int dir, ExeInfo* info) {
    if (info->recovery_tried) return;
    info->recovery_tried = true;
    std::string path = fmt::format("binaries/{}", info->sha256.get<std::string>());
    if (sink_.has(path)) {
      info->recovered = path;
      return;
    }
    proc::ScopedFd fd(::openat(dir, "exe", O_RDONLY | O_CLOEXEC));
    if (!fd.ok()) {
      sink_.warn(fmt::format("pid {}: deleted exe not recovered: {}", pid, std::strerror(errno)));
      return;
    }
    auto copied = sink_.copy(path, fd.get(), ctx_.max_binary_bytes);
    if (!copied.ok()) {
      sink_.warn(fmt::format("pid {}: deleted exe not recovered: {}", pid, copied.status()));
      return;
    }
    info->recovered = path;
    info->truncated = copied->truncated;
  }

  json auditId(int dir, const char* file) {
    if (!readPidFile(dir, file, 64)) return nullptr;
    auto id = proc::auditIdOrUnset(buf_);
    return id ? json(*id) : json(nullptr);
  }

  static json link(int dir, const char* file) {
    auto t = proc::readLinkAt(dir, file);
    return t ? json(proc::utf8(*t)) : json(nullptr);
  }

  // The user name of `uid` through NSS, null if it has none. Cached per scan.
  json userName(uint32_t uid) {
    auto [it, inserted] = users_.try_emplace(uid, nullptr);
    if (inserted) {
      if (auto name = userNameOfUid(uid)) it->second = proc::utf8(*name);
    }
    return it->second;
  }

  // hidden_pids.jsonl: pids 1..min(pid_max, highest listed + 32768) that exist (kill(pid, 0)
  // finds them) but were not listed, excluding threads (Tgid != pid) and processes that
  // started after the listing or appear in a second listing. Probes from the top down for at
  // most kHiddenProbeBudget (a warning says how far it got when cut).
  //
  // prepareHiddenProbe (the scan's thread) sets the probe up, nullopt when it cannot be
  // meaningful; probeCandidates (the probe's thread) makes the kill() calls; recordHidden (the
  // scan's thread, after the scan) checks and records what they found.
  std::optional<HiddenProbe> prepareHiddenProbe(const std::vector<int>& pids) {
    // kill() numbers pids in the agent's pid namespace, /proc in the one it was mounted for:
    // probing is meaningful only when they are the same (/proc/self names the agent).
    auto self = proc::readLinkAt(proc_fd_, "self");
    if (!self || *self != std::to_string(::getpid())) {
      sink_.warn("hidden pids not probed: /proc belongs to another pid namespace");
      return std::nullopt;
    }
    int pid_max = 4194304;  // PID_MAX_LIMIT
    if (proc::readFileAt(proc_fd_, "sys/kernel/pid_max", 64, &buf_)) {
      int v = std::atoi(buf_.c_str());
      if (v > 0) pid_max = v;
    }
    int highest = pids.empty() ? 0 : *std::max_element(pids.begin(), pids.end());
    HiddenProbe probe;
    probe.limit = std::min(pid_max, highest + kHiddenProbeMargin);
    probe.listed.assign(static_cast<size_t>(probe.limit) + 1, false);
    for (int p : pids) {
      if (p <= probe.limit) probe.listed[static_cast<size_t>(p)] = true;
    }
    return probe;
  }

  // Newest pids first (pids are handed out upwards, wrapping at pid_max), within a time
  // budget: a kill() costs about 0.5 us, and pid_max may be 4194304. Touches only *probe.
  static void probeCandidates(HiddenProbe* probe, const std::atomic<bool>& stop) {
    const auto deadline = std::chrono::steady_clock::now() + kHiddenProbeBudget;
    for (int p = probe->limit; p >= 1; --p) {
      if ((p & 4095) == 0 && stop) return;
      if ((p & 4095) == 0 && std::chrono::steady_clock::now() > deadline) {
        probe->cut_at = p + 1;
        return;
      }
      if (probe->listed[static_cast<size_t>(p)]) continue;
      if (::kill(p, 0) == 0 || errno == EPERM) probe->candidates.push_back(p);
    }
  }

  void recordHidden(const HiddenProbe& probe, std::optional<int64_t> listed_at_ms) {
    if (probe.cut_at != 0) {
      sink_.warn(fmt::format("hidden pid probe cut at its {} ms budget: pids {}..{} probed",
                             kHiddenProbeBudget.count(), probe.cut_at, probe.limit));
    }
    if (probe.candidates.empty()) return;
    const int limit = probe.limit;
    std::vector<bool> relisted(static_cast<size_t>(limit) + 1, false);
    proc::forEachNumericEntry(proc_fd_, ".", [&](int p, const char*) {
      if (p <= limit) relisted[static_cast<size_t>(p)] = true;
      return true;
    });
    for (int p : probe.candidates) {
      if (sink_.stopped()) return;
      if (relisted[static_cast<size_t>(p)]) continue;  // started after the first listing
      char name[16];
      std::snprintf(name, sizeof name, "%d", p);
      proc::ScopedFd dir = proc::openDir(proc_fd_, name);
      if (!dir.ok() || !readPidFile(dir.get(), "status", kStatusCap)) continue;
      if (parseProcStatus(buf_).tgid != p) continue;  // a thread: never listed
      if (!readPidFile(dir.get(), "stat", kStatCap)) continue;
      auto st = parseProcStat(buf_);
      if (!st.ok()) continue;
      if (listed_at_ms &&
          static_cast<int64_t>(st->start_ticks * 1000 / ticks_) > *listed_at_ms + 10) {
        continue;  // started after the listing
      }
      if (!sink_.record("hidden_pids.jsonl", json{{"pid", p}, {"comm", proc::utf8(st->comm)}})) {
        return;
      }
    }
  }

  const CollectContext& ctx_;
  ArtifactSink& sink_;
  const int proc_fd_;
  const bool on_procfs_ = proc::onProcfs(proc_fd_);
  uint64_t ticks_ = 100;
  std::optional<int64_t> btime_ms_;
  std::string buf_;  // reused by every read
  std::unordered_map<ExeKey, ExeInfo, ExeKeyHash> exes_;
  std::unordered_map<uint32_t, json> users_;
};

class ProcessCollector final : public Collector {
 public:
  std::string_view name() const override { return "processes"; }
  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    proc::ScopedFd proc_fd = proc::openDir(AT_FDCWD, ctx.proc_root.c_str());
    if (!proc_fd.ok()) {
      return absl::UnavailableError(
          fmt::format("cannot open {}: {}", ctx.proc_root.string(), std::strerror(errno)));
    }
    return ProcessScan(ctx, sink, proc_fd.get()).run();
  }
};

}  // namespace

std::unique_ptr<Collector> makeProcessCollector() { return std::make_unique<ProcessCollector>(); }

}  // namespace bulkhead::agent::collect
