// Race-free signalling of processes: each process is pinned (a pidfd), its identity (pid +
// start time) re-checked in /proc after pinning, and only then signalled through the pin, so
// a pid reused by another process is never hit.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "agent/core/processes.h"
#include "agent/linux/proc_fs.h"
#include "agent/linux/process_signaller.h"

namespace bulkhead::agent {

// ProcessSignaller on pidfd_open / pidfd_send_signal; a handle is a pidfd. Stateless.
class PidfdSignaller final : public ProcessSignaller {
 public:
  absl::StatusOr<int> pin(int pid) override;
  void release(int handle) override;
  absl::Status signal(int handle, int sig) override;
  bool exited(int handle) override;
};

// The processes of one kill, pinned. Not thread-safe.
class PinnedProcesses {
 public:
  // Both must outlive this object.
  PinnedProcesses(ProcFs* procfs, ProcessSignaller* signaller)
      : procfs_(procfs), signaller_(signaller) {}
  ~PinnedProcesses();   // releases the pins
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
  ProcFs* procfs_;
  ProcessSignaller* signaller_;
  std::vector<ProcessInfo> procs_;
  std::vector<int> handles_;   // parallel to procs_
};

}  // namespace bulkhead::agent
