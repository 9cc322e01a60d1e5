#include "agent/linux/process_killer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "agent/linux/proc_scan.h"

namespace bulkhead::agent {
namespace {

int pidfdOpen(int pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int pidfdSendSignal(int fd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0));
}

bool exited(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
}

}  // namespace

PinnedProcesses::~PinnedProcesses() {
  for (int fd : fds_) ::close(fd);
}

bool PinnedProcesses::pinned(int pid) const {
  for (const auto& p : procs_) {
    if (p.pid == pid) return true;
  }
  return false;
}

bool PinnedProcesses::pin(const ProcessInfo& p, std::string* why) {
  if (pinned(p.pid)) return true;
  int fd = pidfdOpen(p.pid);
  if (fd < 0) {
    *why = errno == ESRCH ? "already exited" : fmt::format("pidfd_open: {}", std::strerror(errno));
    return false;
  }
  // The pidfd now holds whatever process has this pid: make sure it is the one we chose.
  auto now = readProcess(p.pid, false);
  if (!now || now->start_ticks != p.start_ticks) {
    ::close(fd);
    *why = now ? "pid reused by another process: not signalled" : "already exited";
    return false;
  }
  procs_.push_back(p);
  fds_.push_back(fd);
  return true;
}

std::vector<std::pair<int, std::string>> PinnedProcesses::signalAll(int sig) {
  std::vector<std::pair<int, std::string>> out;
  for (size_t i = 0; i < fds_.size(); ++i) {
    std::string err;
    if (pidfdSendSignal(fds_[i], sig) != 0 && errno != ESRCH) {
      err = fmt::format("pidfd_send_signal({}): {}", sig, std::strerror(errno));
    }
    out.emplace_back(procs_[i].pid, err);
  }
  return out;
}

std::vector<int> PinnedProcesses::waitExited(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::vector<int> alive;
    for (size_t i = 0; i < fds_.size(); ++i) {
      if (!exited(fds_[i])) alive.push_back(procs_[i].pid);
    }
    if (alive.empty() || std::chrono::steady_clock::now() >= deadline) return alive;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void PinnedProcesses::waitStopped(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool all = true;
    for (size_t i = 0; i < fds_.size() && all; ++i) {
      if (exited(fds_[i])) continue;
      auto text = fmt::format("/proc/{}/stat", procs_[i].pid);
      int fd = ::open(text.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      char buf[1024];
      ssize_t n = ::read(fd, buf, sizeof buf - 1);
      ::close(fd);
      if (n <= 0) continue;
      auto parsed = parseProcStat(std::string_view(buf, static_cast<size_t>(n)));
      if (parsed.ok() && parsed->state != 'T' && parsed->state != 't' && parsed->state != 'Z' &&
          parsed->state != 'X') {
        all = false;
      }
    }
    if (all || std::chrono::steady_clock::now() >= deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace bulkhead::agent
