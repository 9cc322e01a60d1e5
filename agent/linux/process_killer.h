// Race-free signalling of processes by pidfd: each process is pinned with pidfd_open, its
// identity (pid + start time) re-checked in /proc after pinning, and only then signalled with
// pidfd_send_signal, so a pid reused by another process is never hit.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "agent/core/processes.h"

namespace bulkhead::agent {

class PinnedProcesses {
 public:
  PinnedProcesses() = default;
  ~PinnedProcesses();   // closes the pidfds
  PinnedProcesses(const PinnedProcesses&) = delete;
  PinnedProcesses& operator=(const PinnedProcesses&) = delete;

  // Pins `p` unless already pinned. False (with `why`) when it is gone or its pid now names
  // another process.
  bool pin(const ProcessInfo& p, std::string* why);
  bool pinned(int pid) const;
  // Sends `sig` to every pinned process still alive; returns per-pid errors ("" = sent).
  std::vector<std::pair<int, std::string>> signalAll(int sig);
  // Waits until every pinned process has exited (or `timeout`); returns the pids still alive.
  std::vector<int> waitExited(std::chrono::milliseconds timeout);
  // Waits until every pinned process is stopped ('T' in /proc stat) or gone, up to `timeout`.
  void waitStopped(std::chrono::milliseconds timeout);
  const std::vector<ProcessInfo>& processes() const { return procs_; }

 private:
  std::vector<ProcessInfo> procs_;
  std::vector<int> fds_;
};

}  // namespace bulkhead::agent
