// open_files.jsonl (every fd of every process: what it points at, whether that was deleted)
// and memory_maps.jsonl (only the mappings that hide code: deleted files, memfd files and
// anonymous executable memory), read from <proc_root>/PID/fd and <proc_root>/PID/maps.
#include <fcntl.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "agent/collect/collectors.h"
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
      char name[16];
      std::snprintf(name, sizeof name, "%d", pid);
      proc::ScopedFd dir = proc::openDir(proc_fd.get(), name);
      if (!dir.ok()) continue;  // exited
      if (!fileDescriptors(pid, dir.get(), sink)) return absl::OkStatus();
      if (!proc::readFileAt(dir.get(), "maps", kMapsCap, &maps)) continue;
      if (!mappings(pid, maps, sink)) return absl::OkStatus();
    }
    return absl::OkStatus();
  }

 private:
  // False once the sink refuses records.
  static bool fileDescriptors(int pid, int dir, ArtifactSink& sink) {
    proc::ScopedFd fds = proc::openDir(dir, "fd");
    if (!fds.ok()) return true;  // exited, or a kernel thread without a table
    bool more = true;
    proc::forEachNumericEntry(fds.get(), ".", [&](int fd, const char* entry) {
      auto target = proc::readLinkAt(fds.get(), entry);
      if (!target) return true;  // closed meanwhile
      more = sink.record("open_files.jsonl", json{{"pid", pid},
                                                  {"fd", fd},
                                                  {"target", proc::utf8(*target)},
                                                  {"deleted", proc::linkFlags(*target).deleted}});
      return more && !sink.stopped();
    });
    return more;
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
