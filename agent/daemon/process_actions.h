// The agent's session and process commands (list-sessions, kill-sessions, kill-process).
//
// A kill first stops every chosen process (SIGSTOP through a pinned pidfd) so none can fork
// away, re-scans until no new member of the sessions (or new descendant, with --tree)
// appears, optionally captures evidence, destroys the stopped processes' TCP sockets, then
// SIGKILLs them all and waits for them to exit. Evidence, two levels:
// - --freeze: a ProcessRecord per victim in the result (exe hash, TCP sockets); no evidence
//   store needed.
// - --capture-first (implies --freeze): a full signed capture of the host taken while the
//   victims are stopped (StoppedCapture), with each victim's maps, fds, status, cmdline,
//   environ and executable; bounded by capture_limit_ms. Then the kill, whatever became of the
//   capture; then the upload. The result names the capture and evidence id, or why there is
//   none (then the command fails: the operator asked for evidence and has none, though the
//   processes are dead). Protected processes (pid 1, the agent, the sshd listener, the
// configured list) are spared and listed; a request that would touch only protected
// processes, or names an unknown user or session, is refused with nothing done.
//
// Freezing uses SIGSTOP, not the cgroup v2 freezer: the processes of a session live in
// whatever cgroup their parents had (hybrid v1/v2 hosts, the lab), and SIGSTOP holds them
// just as well until the SIGKILL, which a stopped process cannot escape.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "agent/core/processes.h"
#include "agent/daemon/stopped_capture.h"
#include "agent/linux/flow_killer.h"
#include "agent/linux/proc_fs.h"
#include "agent/linux/proc_scan.h"
#include "agent/linux/process_signaller.h"
#include "bulkhead/v1/agent.pb.h"
#include "common/scheduler.h"

namespace bulkhead::agent {

struct ProcessActionsOptions {
  Protection protection;
  std::chrono::milliseconds kill_wait{3000};   // for the processes to exit after SIGKILL
  int max_rounds = 8;                          // re-scans for late forks
  std::chrono::milliseconds capture_limit{60000};       // capture-first, when the command says 0
  std::chrono::milliseconds max_capture_limit{600000};  // longer requests are cut to this
};

class ProcessActions {
 public:
  // `sessions` lists sessions; `flows` (may be null) cuts the killed processes' sockets;
  // `procfs` reads the processes and `signaller` stops and kills them. All must outlive this
  // object.
  ProcessActions(SessionSource* sessions, FlowKiller* flows, ProcFs* procfs,
                 ProcessSignaller* signaller, ProcessActionsOptions options);

  // Runs one command (list_sessions, kill_sessions or kill_process). Blocks.
  bulkhead::v1::CommandResult run(const bulkhead::v1::Command& command);

  // The engine of capture-first kills (not owned; nullptr: they kill without evidence and say
  // so). Blocks until a kill using the previous one has finished, so the daemon can unset it
  // before destroying it.
  void setStoppedCapture(StoppedCapture* capture);

 private:
  std::mutex capture_mu_;              // held by a capture-first kill while it runs
  StoppedCapture* capture_ = nullptr;  // GUARDED_BY(capture_mu_)
  SessionSource* sessions_;
  FlowKiller* flows_;
  ProcFs* procfs_;
  ProcessSignaller* signaller_;
  ProcessActionsOptions options_;
};

// Runs ProcessActions on a thread of its own (a Scheduler: a kill may wait seconds for
// processes to die; enforcement must not wait behind it), one command at a time, in order.
// Commands whose deadline passed while queued are answered with an error and not run.
class ProcessActionWorker {
 public:
  using Done = std::function<void(const bulkhead::v1::CommandResult&)>;
  // `actions` must outlive the worker; `done` runs on the worker thread.
  ProcessActionWorker(ProcessActions* actions, Done done, std::function<int64_t()> now_unix_ms);
  ~ProcessActionWorker();   // stops and joins; queued commands are dropped
  ProcessActionWorker(const ProcessActionWorker&) = delete;
  ProcessActionWorker& operator=(const ProcessActionWorker&) = delete;

  // Queues `command`. Never blocks.
  void submit(const bulkhead::v1::Command& command);

 private:
  void runOne(const bulkhead::v1::Command& command);

  ProcessActions* actions_;
  Done done_;
  std::function<int64_t()> now_unix_ms_;
  std::atomic<bool> stopping_{false};   // queued commands are skipped once set
  Scheduler thread_{"bh-actions"};      // last: stopped first on destruction
};

}  // namespace bulkhead::agent
