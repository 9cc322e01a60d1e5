// open_files.jsonl (every fd of every process: what it points at, whether that was deleted)
// and memory_maps.jsonl (only the mappings that hide code: deleted files, memfd files and
// anonymous executable memory), read from <proc_root>/PID/fd (the capture's shared walk,
// fd_table.h) and <proc_root>/PID/maps.
#include <fcntl.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "agent/collect/collectors.h"
#include "agent/collect/fd_table.h"
#include "agent/linux/fd_walk.h"
#include "agent/linux/proc_files.h"
#include "common/lines.h"

namespace bulkhead::agent::collect {
namespace {

using nlohmann::json;

constexpr size_t kMapsCap = 64 * kMiB;  // a process with a million mappings is itself news

class OpenFilesCollector final : public Collector {
 public:
  std::string_view name() const override { return "open_files"; }

  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    // The fds come from the capture's one walk of /proc/*/fd, shared with the sockets
    // collector (fd_table.h); the maps are read here.
    std::shared_ptr<const proc::FdWalk> walk = openFds(ctx, sink);
    if (walk == nullptr) return absl::OkStatus();  // stopped while another collector walked
    if (walk->end == proc::FdWalk::End::kNoProc) return absl::UnavailableError(walk->error);
    if (std::string warning = fdWalkIncomplete(*walk, sink, "open files"); !warning.empty()) {
      sink.warn(warning);
    }
    for (const proc::ProcessFds& process : walk->processes) {
      if (sink.stopped() || !fileDescriptors(process, sink)) return absl::OkStatus();
    }
    proc::ScopedFd proc_fd = proc::openDir(AT_FDCWD, ctx.proc_root.c_str());
    if (!proc_fd.ok()) {
      return absl::UnavailableError(
          fmt::format("cannot open {}: {}", ctx.proc_root.string(), std::strerror(errno)));
    }
    std::vector<int> pids;
    proc::forEachNumericEntry(proc_fd.get(), ".", [&](int pid, const char*) {
      pids.push_back(pid);
      return true;
    });
    std::string maps;
    for (int pid : pids) {
      if (sink.stopped()) return absl::OkStatus();
      // One file per process: opened by its path, with no directory fd of <pid> to open and
      // close (two system calls fewer per process).
      char path[32];
      std::snprintf(path, sizeof path, "%d/maps", pid);
      if (!proc::readFileAt(proc_fd.get(), path, kMapsCap, &maps)) continue;  // exited
      if (!mappings(pid, maps, sink)) return absl::OkStatus();
    }
    return absl::OkStatus();
  }

 private:
  // False once the sink refuses records.
  static bool fileDescriptors(const proc::ProcessFds& process, ArtifactSink& sink) {
    for (const proc::OpenFd& fd : process.fds) {
      if (!sink.record("open_files.jsonl", json{{"pid", process.pid},
                                                {"fd", fd.fd},
                                                {"target", proc::utf8(fd.target)},
                                                {"deleted", proc::linkFlags(fd.target).deleted}})) {
        return false;
      }
    }
    return true;
  }

  static bool mappings(int pid, std::string_view text, ArtifactSink& sink) {
    for (std::string_view line : splitLines(text)) {
      auto m = proc::parseMapsLine(line);
      if (!m || !proc::interestingMapping(*m)) continue;
      proc::LinkFlags flags = proc::linkFlags(m->path);
      json r{{"pid", pid},
             {"start", std::string(m->start)},
             {"end", std::string(m->end)},
             {"perms", std::string(m->perms)},
             {"offset", std::string(m->offset)},
             {"path", m->path.empty() ? json(nullptr) : json(proc::utf8(m->path))},
             {"deleted", flags.deleted},
             {"memfd", flags.memfd}};
      if (!sink.record("memory_maps.jsonl", r)) return false;
    }
    return true;
  }
};

}  // namespace

std::unique_ptr<Collector> makeOpenFilesCollector() {
  return std::make_unique<OpenFilesCollector>();
}

}  // namespace bulkhead::agent::collect
