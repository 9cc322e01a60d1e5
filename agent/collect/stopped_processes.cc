// stopped_processes.jsonl (+ binaries/<sha256>): the full detail of the processes a
// capture-first kill holds stopped (CollectContext::target_pids), one record per pid. The other
// collectors see them too (processes.jsonl, open_files.jsonl, sockets.jsonl); this one keeps
// what they leave out for the rest of the host: every mapping (not only the suspicious ones),
// every fd with its position and flags, the full status, environ up to 256 KiB, and the
// executable itself, copied into the bundle whatever its state (bounded by max_binary_bytes
// and the capture's binary budget).
//
// A pid is read relative to a directory fd of <proc_root>/PID, so a pid that exited (or was
// reused: the victims are pinned and stopped, so it should not be) fails its reads and is
// recorded with "error" instead of answering for another process.
#include <fcntl.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "agent/collect/collectors.h"
#include "agent/core/processes.h"
#include "agent/linux/proc_files.h"
#include "agent/linux/proc_scan.h"
#include "common/format.h"
#include "common/lines.h"

namespace bulkhead::agent::collect {
namespace {

using nlohmann::json;

constexpr size_t kStatusCap = 1 << 20;
constexpr size_t kStatCap = 4096;
constexpr size_t kCmdlineCap = size_t{256} * 1024;
constexpr size_t kEnvironCap = size_t{256} * 1024;
constexpr size_t kMapsCap = 16 * kMiB;  // per process
constexpr size_t kFdInfoCap = 4096;

// The lines of `text` (no trailing empty line).
json lines(std::string_view text) {
  json out = json::array();
  for (std::string_view line : splitLines(text)) out.push_back(proc::utf8(line));
  return out;
}

// "pos:\t0\nflags:\t02\n..." -> {"pos": "0", "flags": "02", ...} (first two fields only).
void addFdInfo(std::string_view text, json* out) {
  for (std::string_view line : splitLines(text)) {
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon);
    if (key == "pos" || key == "flags") {
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      (*out)[std::string(key)] = std::string(value);
    }
  }
}

class StoppedProcessCollector final : public Collector {
 public:
  std::string_view name() const override { return "stopped_processes"; }
  uint64_t sizeCap() const override { return 256 * kMiB; }

  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    proc::ScopedFd proc_fd = proc::openDir(AT_FDCWD, ctx.proc_root.c_str());
    if (!proc_fd.ok()) {
      return absl::UnavailableError(
          fmt::format("cannot open {}: {}", ctx.proc_root.string(), std::strerror(errno)));
    }
    for (int pid : ctx.target_pids) {
      if (sink.stopped()) return absl::OkStatus();
      if (!sink.record("stopped_processes.jsonl", readOne(ctx, proc_fd.get(), pid, sink))) {
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

 private:
  json readOne(const CollectContext& ctx, int proc_fd, int pid, ArtifactSink& sink) {
    json r{{"pid", pid}};
    char name[16];
    std::snprintf(name, sizeof name, "%d", pid);
    proc::ScopedFd dir = proc::openDir(proc_fd, name);
    if (!dir.ok()) {
      r["error"] =
          fmt::format("cannot open {}/{}: {}", ctx.proc_root.string(), pid, std::strerror(errno));
      sink.warn(fmt::format("pid {}: {}", pid, r["error"].get<std::string>()));
      return r;
    }
    if (proc::readFileAt(dir.get(), "stat", kStatCap, &buf_)) {
      if (auto st = parseProcStat(buf_); st.ok()) {
        r["state"] = std::string(1, st->state);
        r["ppid"] = st->ppid;
        r["start_ticks"] = st->start_ticks;
      }
    }
    r["status"] = proc::readFileAt(dir.get(), "status", kStatusCap, &buf_) ? lines(buf_) : json();
    r["cmdline"] =
        proc::readFileAt(dir.get(), "cmdline", kCmdlineCap, &buf_) ? proc::splitNul(buf_) : json();
    r["environ"] =
        proc::readFileAt(dir.get(), "environ", kEnvironCap, &buf_) ? proc::splitNul(buf_) : json();
    r["environ_truncated"] = buf_.size() >= kEnvironCap;
    r["cwd"] = link(dir.get(), "cwd");
    r["root"] = link(dir.get(), "root");
    r["maps"] = proc::readFileAt(dir.get(), "maps", kMapsCap, &buf_) ? lines(buf_) : json();
    r["fds"] = fds(dir.get());
    addExe(ctx, pid, dir.get(), sink, &r);
    return r;
  }

  // Every fd: number, link target, socket inode (0 when not a socket), pos and flags.
  json fds(int dir) {
    json out = json::array();
    proc::ScopedFd fd_dir = proc::openDir(dir, "fd");
    if (!fd_dir.ok()) return nullptr;
    proc::ScopedFd info_dir = proc::openDir(dir, "fdinfo");
    proc::forEachNumericEntry(fd_dir.get(), ".", [&](int fd, const char* entry) {
      auto target = proc::readLinkAt(fd_dir.get(), entry);
      if (!target) return true;
      json f{{"fd", fd},
             {"target", proc::utf8(*target)},
             {"socket_inode", proc::socketInodeFromLink(*target)},
             {"deleted", proc::linkFlags(*target).deleted}};
      if (info_dir.ok() && proc::readFileAt(info_dir.get(), entry, kFdInfoCap, &info_)) {
        addFdInfo(info_, &f);
      }
      out.push_back(std::move(f));
      return true;
    });
    return out;
  }

  // exe, exe_sha256 (of the whole file), binary ("binaries/<sha256>", the bytes as read through
  // /proc/PID/exe, so deleted and memfd executables too), binary_truncated.
  void addExe(const CollectContext& ctx, int pid, int dir, ArtifactSink& sink, json* r) {
    (*r)["exe"] = link(dir, "exe");
    (*r)["exe_sha256"] = nullptr;
    (*r)["binary"] = nullptr;
    const std::string exe_path = fmt::format("{}/{}/exe", ctx.proc_root.string(), pid);
    auto sha = sha256OfFile(exe_path);
    if (!sha.ok()) {
      (*r)["exe_error"] = std::string(sha.status().message());
      return;
    }
    (*r)["exe_sha256"] = *sha;
    const std::string path = fmt::format("binaries/{}", *sha);
    if (sink.has(path)) {
      (*r)["binary"] = path;
      return;
    }
    proc::ScopedFd fd(::openat(dir, "exe", O_RDONLY | O_CLOEXEC));
    if (!fd.ok()) {
      sink.warn(fmt::format("pid {}: exe not copied: {}", pid, std::strerror(errno)));
      return;
    }
    auto copied = sink.copy(path, fd.get(), ctx.max_binary_bytes);
    if (!copied.ok()) {
      sink.warn(fmt::format("pid {}: exe not copied: {}", pid, copied.status()));
      return;
    }
    (*r)["binary"] = path;
    (*r)["binary_truncated"] = copied->truncated;
  }

  static json link(int dir, const char* file) {
    auto t = proc::readLinkAt(dir, file);
    return t ? json(proc::utf8(*t)) : json(nullptr);
  }

  std::string buf_;
  std::string info_;
};

}  // namespace

std::unique_ptr<Collector> makeStoppedProcessCollector() {
  return std::make_unique<StoppedProcessCollector>();
}

}  // namespace bulkhead::agent::collect
