#include "agent/linux/fd_walk.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "agent/linux/proc_files.h"

namespace bulkhead::agent::proc {

FdWalk walkOpenFds(const std::filesystem::path& proc_root, std::chrono::milliseconds budget,
                   absl::FunctionRef<bool()> stop) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  FdWalk walk;
  walk.budget = budget;
  ScopedFd proc_fd = openDir(AT_FDCWD, proc_root.c_str());
  if (!proc_fd.ok()) {
    walk.end = FdWalk::End::kNoProc;
    walk.error = fmt::format("cannot open {}: {}", proc_root.string(), std::strerror(errno));
    return walk;
  }
  std::string comm;
  forEachNumericEntry(proc_fd.get(), ".", [&](int pid, const char* name) {
    if (stop()) {
      walk.end = FdWalk::End::kStopped;
      return false;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      walk.end = FdWalk::End::kOverBudget;
      return false;
    }
    // <pid>/fd opened in one step, and <pid>/comm read through it as fd/../comm: no directory
    // fd of <pid> to open and close for each process (two system calls; one costs 1 us before
    // any work on the 2-core VM measured), and still no answer from a reused pid: ".." is the
    // directory of the process that was opened, whose lookups fail once it has exited.
    char path[32];
    std::snprintf(path, sizeof path, "%s/fd", name);
    ScopedFd fds = openDir(proc_fd.get(), path);
    if (!fds.ok()) return true;  // exited, or a kernel thread without a table
    ProcessFds process;
    process.pid = pid;
    bool comm_tried = false;
    const int fds_fd = fds.get();  // open until forEachNumericEntry returns
    forEachNumericEntry(std::move(fds), [&](int fd, const char* entry) {
      std::optional<std::string> target = readLinkAt(fds_fd, entry);
      if (!target) return true;  // closed meanwhile
      if (!comm_tried && socketInodeFromLink(*target) != 0) {
        comm_tried = true;
        if (readFileAt(fds_fd, "../comm", 64, &comm)) {
          if (!comm.empty() && comm.back() == '\n') comm.pop_back();
          process.comm = comm;
        }
      }
      process.fds.push_back(OpenFd{fd, *std::move(target)});
      return true;
    });
    walk.processes.push_back(std::move(process));
    return true;
  });
  return walk;
}

}  // namespace bulkhead::agent::proc
