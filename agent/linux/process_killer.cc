#include "agent/linux/process_killer.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <fmt/format.h>

namespace bulkhead::agent {

absl::StatusOr<int> PidfdSignaller::pin(int pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd >= 0) return fd;
  if (errno == ESRCH) return absl::NotFoundError("already exited");
  return absl::UnavailableError(fmt::format("pidfd_open: {}", std::strerror(errno)));
}

void PidfdSignaller::release(int handle) { ::close(handle); }

absl::Status PidfdSignaller::signal(int handle, int sig) {
  if (::syscall(SYS_pidfd_send_signal, handle, sig, nullptr, 0) != 0 && errno != ESRCH) {
    return absl::UnavailableError(
        fmt::format("pidfd_send_signal({}): {}", sig, std::strerror(errno)));
  }
  return absl::OkStatus();
}

bool PidfdSignaller::exited(int handle) {
  pollfd p{handle, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
}

PinnedProcesses::~PinnedProcesses() {
  for (int h : handles_) signaller_->release(h);
}

bool PinnedProcesses::pinned(int pid) const {
  for (const auto& p : procs_) {
    if (p.pid == pid) return true;
  }
  return false;
}

bool PinnedProcesses::pin(const ProcessInfo& p, std::string* why) {
  if (pinned(p.pid)) return true;
  auto handle = signaller_->pin(p.pid);
  if (!handle.ok()) {
    *why = std::string(handle.status().message());
    return false;
  }
  // The pin now holds whatever process has this pid: make sure it is the one we chose.
  auto now = procfs_->read(p.pid, false);
  if (!now || now->start_ticks != p.start_ticks) {
    signaller_->release(*handle);
    *why = now ? "pid reused by another process: not signalled" : "already exited";
    return false;
  }
  procs_.push_back(p);
  handles_.push_back(*handle);
  return true;
}

std::vector<std::pair<int, std::string>> PinnedProcesses::signalAll(int sig) {
  std::vector<std::pair<int, std::string>> out;
  for (size_t i = 0; i < handles_.size(); ++i) {
    absl::Status s = signaller_->signal(handles_[i], sig);
    out.emplace_back(procs_[i].pid, s.ok() ? "" : std::string(s.message()));
  }
  return out;
}

std::vector<int> PinnedProcesses::waitExited(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::vector<int> alive;
    for (size_t i = 0; i < handles_.size(); ++i) {
      if (!signaller_->exited(handles_[i])) alive.push_back(procs_[i].pid);
    }
    if (alive.empty() || std::chrono::steady_clock::now() >= deadline) return alive;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void PinnedProcesses::waitStopped(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool all = true;
    for (size_t i = 0; i < handles_.size() && all; ++i) {
      if (signaller_->exited(handles_[i])) continue;
      std::optional<char> state = procfs_->state(procs_[i].pid);
      if (state && *state != 'T' && *state != 't' && *state != 'Z' && *state != 'X') all = false;
    }
    if (all || std::chrono::steady_clock::now() >= deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace bulkhead::agent
