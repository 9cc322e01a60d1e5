#include "agent/daemon/process_actions.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <type_traits>

#include "agent/linux/proc_files.h"
#include "agent/linux/process_killer.h"
#include "common/format.h"

namespace bulkhead::agent {
namespace {

namespace v1 = bulkhead::v1;
using proc::utf8;  // host text (names, argv, paths) is arbitrary bytes; proto strings are UTF-8

v1::CommandResult refused(const v1::Command& c, const std::string& why) {
  v1::CommandResult r;
  r.set_command_id(c.id());
  r.set_ok(false);
  r.set_refused(true);
  r.set_error(why);
  return r;
}

v1::CommandResult failed(const v1::Command& c, const std::string& why) {
  v1::CommandResult r;
  r.set_command_id(c.id());
  r.set_ok(false);
  r.set_error(why);
  return r;
}

// The fields a ProcessEntry and a ProcessRecord share; a process without a command line shows
// as "[comm]".
template <typename Message>
void setProcessFields(const ProcessInfo& p, Message& m) {
  m.set_pid(p.pid);
  m.set_ppid(p.ppid);
  m.set_user(utf8(p.user));
  m.set_uid(p.uid);
  m.set_cmdline(utf8(p.cmdline.empty() ? fmt::format("[{}]", p.comm) : p.cmdline));
  m.set_exe(utf8(p.exe));
}

v1::ProcessEntry processEntry(const ProcessInfo& p) {
  v1::ProcessEntry e;
  setProcessFields(p, e);
  return e;
}

v1::SessionRecord sessionRecord(const SessionInfo& s) {
  v1::SessionRecord r;
  r.set_id(s.id);
  r.set_user(utf8(s.user));
  r.set_loginuid(s.loginuid);
  r.set_tty(utf8(s.tty));
  r.set_remote(utf8(s.remote));
  r.set_service(utf8(s.service));
  r.set_leader_pid(s.leader_pid);
  r.set_start_unix(s.start_unix);
  r.set_processes(static_cast<uint32_t>(s.pids.size()));
  for (int pid : s.pids) r.add_pids(pid);
  r.set_interactive(s.interactive());
  return r;
}

// The evidence record of a stopped process.
v1::ProcessRecord processRecord(const ProcessInfo& p,
                                const std::map<uint64_t, const ProcNetSocket*>& tcp,
                                ProcFs& procfs) {
  v1::ProcessRecord r;
  setProcessFields(p, r);
  r.set_comm(utf8(p.comm));
  r.set_loginuid(p.loginuid);
  r.set_sessionid(p.sessionid);
  r.set_start_unix(p.start_unix);
  auto hash = procfs.exeSha256(p.pid);
  if (hash.ok()) {
    r.set_exe_sha256(*hash);
  } else {
    r.set_exe_sha256_error(utf8(fmt::format("{}", hash.status())));
  }
  for (uint64_t inode : p.socket_inodes) {
    v1::SocketRecord& sock = *r.add_sockets();
    sock.set_inode(inode);
    auto it = tcp.find(inode);
    if (it == tcp.end()) {
      sock.set_kind(v1::SOCKET_KIND_OTHER);
    } else {
      sock.set_kind(v1::SOCKET_KIND_TCP);
      sock.set_local(utf8(it->second->local));
      sock.set_remote(utf8(it->second->remote));
      sock.set_state(static_cast<uint32_t>(it->second->state));
    }
  }
  return r;
}

// Picks the processes to act on from a fresh scan; `pinned` are those already held.
using Selector = std::function<std::vector<ProcessInfo>(const std::vector<ProcessInfo>& all,
                                                        const PinnedProcesses& pinned)>;

}  // namespace

ProcessActions::ProcessActions(SessionSource* sessions, FlowKiller* flows, ProcFs* procfs,
                               ProcessSignaller* signaller, ProcessActionsOptions options)
    : sessions_(sessions),
      flows_(flows),
      procfs_(procfs),
      signaller_(signaller),
      options_(std::move(options)) {}

namespace {

struct KillRun {
  v1::KillProcessesResult result;
  bool refused = false;
  bool failed = false;
  std::string error;
};

// What evidence a kill takes before it kills.
struct Evidence {
  bool freeze = false;                        // ProcessRecords in the result
  const v1::Command* command = nullptr;       // capture-first: the kill command
  const v1::CaptureState* capture = nullptr;  // capture-first: set (with command)
  std::chrono::milliseconds limit{0};
  StoppedCapture* capturer = nullptr;  // may be null: the capture then fails
};

// The stop / re-scan / capture / cut / kill pipeline shared by kill-sessions and kill-process.
// Once anything is stopped, the kill happens whatever the capture does.
KillRun stopAndKill(const Selector& select, const Evidence& evidence, FlowKiller* flows,
                    ProcFs& procfs, ProcessSignaller& signaller, const ProcessActionsOptions& opt,
                    const std::string& what) {
  const bool freeze = evidence.freeze || evidence.capture != nullptr;
  KillRun run;
  auto all = procfs.scan(true);
  if (!all.ok()) {
    run.failed = true;
    run.error = fmt::format("{}", all.status());
    return run;
  }
  PinnedProcesses pinned(&procfs, &signaller);
  std::map<int, v1::ProcessEntry> spared;
  v1::KillProcessesResult& result = run.result;
  auto plan = planKill(select(*all, pinned), opt.protection);
  for (const auto& s : plan.spared) {
    spared[s.process.pid] = processEntry(s.process);
    spared[s.process.pid].set_why(utf8(s.why));
  }
  if (plan.kill.empty()) {
    run.refused = true;
    if (!plan.spared.empty()) {
      std::vector<std::string> who;
      for (const auto& s : plan.spared) who.push_back(fmt::format("pid {} ({})", s.process.pid, s.why));
      run.error = fmt::format("{} touches only protected processes: {}; nothing killed", what,
                              fmt::join(who, ", "));
    } else {
      run.error = fmt::format("{} matches no process; nothing killed", what);
    }
    return run;
  }
  // Stop what we have, then look again for processes that appeared (forks in flight).
  auto stopBatch = [&](const std::vector<ProcessInfo>& batch) {
    size_t added = 0;
    for (const auto& p : batch) {
      if (pinned.pinned(p.pid)) continue;
      std::string why;
      if (pinned.pin(p, &why)) {
        ++added;
      } else {
        v1::ProcessEntry& e = *result.add_skipped();
        e.set_pid(p.pid);
        e.set_cmdline(utf8(p.cmdline));
        e.set_why(utf8(why));
      }
    }
    pinned.signalAll(SIGSTOP);
    pinned.waitStopped(std::chrono::milliseconds(500));
    return added;
  };
  stopBatch(plan.kill);
  int rounds = 1;
  for (; rounds < opt.max_rounds; ++rounds) {
    auto again = procfs.scan(freeze);
    if (!again.ok()) break;
    auto more = planKill(select(*again, pinned), opt.protection);
    for (const auto& s : more.spared) {
      if (spared.count(s.process.pid)) continue;
      spared[s.process.pid] = processEntry(s.process);
      spared[s.process.pid].set_why(utf8(s.why));
    }
    std::vector<ProcessInfo> fresh;
    for (const auto& p : more.kill) {
      if (!pinned.pinned(p.pid)) fresh.push_back(p);
    }
    if (fresh.empty() || stopBatch(fresh) == 0) break;
  }
  result.set_scan_rounds(static_cast<uint32_t>(rounds));
  std::set<int> victims;
  for (const auto& p : pinned.processes()) victims.insert(p.pid);

  if (freeze) {
    // Every victim is stopped: read its record now (sockets as they are).
    auto sockets = procfs.tcpSockets();
    std::map<uint64_t, const ProcNetSocket*> tcp;
    for (const auto& s : sockets) tcp[s.inode] = &s;
    for (const auto& p : pinned.processes()) {
      auto now = procfs.read(p.pid, true);
      *result.add_records() =
          processRecord(now && now->start_ticks == p.start_ticks ? *now : p, tcp, procfs);
    }
    result.set_frozen(true);
    result.set_freeze_method(v1::FREEZE_METHOD_SIGSTOP);
  }

  // Capture first: the whole host while the victims are held, bounded by the limit.
  absl::Status captured = absl::OkStatus();
  if (evidence.capture != nullptr) {
    result.set_capture_id(evidence.capture->capture_id());
    if (evidence.capturer == nullptr) {
      captured = absl::UnavailableError("this agent has no capture engine");
    } else {
      const auto started = std::chrono::steady_clock::now();
      captured = evidence.capturer->collect(*evidence.command, *evidence.capture,
                                            std::vector<int>(victims.begin(), victims.end()),
                                            evidence.limit);
      const auto stopped_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - started)
                                  .count();
      result.set_stopped_for_capture_ms(stopped_ms);
      spdlog::info("capture-first {}: {} processes stopped {} ms for capture {}: {}", what,
                   victims.size(), stopped_ms, evidence.capture->capture_id(),
                   captured.ok() ? "collected" : std::string(captured.message()));
    }
  }

  // Cut the victims' TCP connections (the peer gets a RST at once), then kill.
  size_t cut = 0;
  if (flows != nullptr) {
    auto report = flows->cut(
        [&victims](const Flow& f) { return f.owner_pid != 0 && victims.count(static_cast<int>(f.owner_pid)) > 0; },
        false);
    if (report.ok()) {
      cut = report->sockets_destroyed.size();
    } else {
      result.set_cut_error(utf8(fmt::format("{}", report.status())));
    }
  }
  result.set_connections_cut(static_cast<uint32_t>(cut));

  for (const auto& [pid, err] : pinned.signalAll(SIGKILL)) {
    if (err.empty()) continue;
    v1::SignalError& e = *result.add_errors();
    e.set_pid(pid);
    e.set_error(utf8(err));
  }
  // A SIGKILLed stopped process still has to be scheduled to die: wait, bounded.
  auto alive = pinned.waitExited(opt.kill_wait);
  std::set<int> alive_set(alive.begin(), alive.end());
  for (const auto& p : pinned.processes()) {
    *(alive_set.count(p.pid) ? result.add_still_alive() : result.add_killed()) = processEntry(p);
  }
  for (auto& [pid, e] : spared) *result.add_spared() = std::move(e);
  std::vector<std::string> errors;
  if (!alive.empty()) {
    errors.push_back(fmt::format("{} process(es) still alive {} ms after SIGKILL: {}", alive.size(),
                                 opt.kill_wait.count(), fmt::join(alive, ", ")));
  }
  // The victims are dead (or reported alive): now the bundle may travel.
  if (evidence.capture != nullptr) {
    if (captured.ok()) {
      auto uploaded = evidence.capturer->upload(*evidence.command, *evidence.capture);
      if (uploaded.ok()) {
        *result.mutable_capture() = *std::move(uploaded);
      } else {
        captured = uploaded.status();
      }
    }
    if (!captured.ok()) {
      result.set_capture_error(utf8(std::string(captured.message())));
      errors.push_back(
          fmt::format("capture-first: no evidence stored ({}); the processes were "
                      "killed without it",
                      std::string(captured.message())));
    }
  }
  if (!errors.empty()) {
    run.failed = true;
    run.error = fmt::format("{}", fmt::join(errors, "; "));
  }
  return run;
}

v1::CommandResult finish(const v1::Command& c, KillRun run) {
  if (run.refused) return refused(c, run.error);
  v1::CommandResult r;
  r.set_command_id(c.id());
  r.set_ok(!run.failed);
  r.set_error(run.error);
  *r.mutable_kill_processes() = std::move(run.result);
  return r;
}

// The evidence `k` (KillSessions or KillProcess) asks for.
template <typename Kill>
Evidence evidenceOf(const v1::Command& c, const Kill& k, const ProcessActionsOptions& opt,
                    StoppedCapture* capturer) {
  Evidence e;
  if constexpr (std::is_same_v<Kill, v1::KillSessions>) e.freeze = k.freeze();
  if (k.capture_first()) {
    e.command = &c;
    e.capture = &k.capture();
    e.limit = k.capture_limit_ms() == 0 ? opt.capture_limit
                                        : std::min(opt.max_capture_limit,
                                                   std::chrono::milliseconds(k.capture_limit_ms()));
    e.capturer = capturer;
  }
  return e;
}

}  // namespace

void ProcessActions::setStoppedCapture(StoppedCapture* capture) {
  std::lock_guard lock(capture_mu_);
  capture_ = capture;
}

v1::CommandResult ProcessActions::run(const v1::Command& c) {
  if (c.has_list_sessions()) {
    auto list = sessions_->sessions();
    if (!list.ok()) return failed(c, fmt::format("cannot list sessions: {}", list.status()));
    v1::CommandResult r;
    r.set_command_id(c.id());
    r.set_ok(true);
    v1::ListSessionsResult& out = *r.mutable_list_sessions();
    out.set_source(utf8(sessions_->name()));
    for (const auto& s : *list) *out.add_sessions() = sessionRecord(s);
    return r;
  }

  if (c.has_kill_sessions()) {
    const auto& k = c.kill_sessions();
    SessionMatch m;
    int given = 0;
    std::string what;
    if (!k.user().empty()) {
      ++given;
      auto uid = procfs_->uidOfUser(k.user());
      if (!uid) return refused(c, fmt::format("--user: unknown user \"{}\"; nothing killed", k.user()));
      m.uid = *uid;
      what = fmt::format("--user {}", k.user());
    }
    if (k.session_id() != 0) {
      ++given;
      m.session_id = k.session_id();
      what = fmt::format("--session {}", k.session_id());
    }
    if (!k.from_cidr().empty()) {
      ++given;
      auto cidr = parseCidr("--from", k.from_cidr());
      if (!cidr.ok()) return refused(c, fmt::format("{}", cidr.status()));
      m.from = *cidr;
      what = fmt::format("--from {}", k.from_cidr());
    }
    if (k.all()) {
      ++given;
      m.all = true;
      what = "--all";
    }
    if (given != 1) {
      return refused(c, "kill-sessions needs exactly one of --user, --session, --from, --all");
    }
    auto list = sessions_->sessions();
    if (!list.ok()) return failed(c, fmt::format("cannot list sessions: {}", list.status()));
    std::set<uint32_t> ids;
    std::vector<v1::SessionRecord> matched;
    for (const auto& s : *list) {
      if (sessionMatches(s, m)) {
        ids.insert(s.id);
        matched.push_back(sessionRecord(s));
      }
    }
    if (m.session_id && ids.empty()) {
      return refused(c, fmt::format("--session: no session {} on this host; nothing killed",
                                    *m.session_id));
    }
    if (ids.empty()) {
      v1::CommandResult r;
      r.set_command_id(c.id());
      r.set_ok(true);
      r.mutable_kill_processes()->set_note(
          utf8(fmt::format("{} matches no session; nothing killed", what)));
      return r;
    }
    // Every process carrying one of the audit session ids: the id is inherited across
    // fork, setsid, nohup and daemonising, and no unprivileged process can change it.
    Selector select = [ids](const std::vector<ProcessInfo>& all, const PinnedProcesses&) {
      std::vector<ProcessInfo> out;
      for (const auto& p : all) {
        if (ids.count(p.sessionid)) out.push_back(p);
      }
      return out;
    };
    spdlog::info("kill-sessions {} requested by {}: sessions {}", what, c.requested_by(),
                 fmt::join(ids, ", "));
    std::unique_lock capture_lock(capture_mu_, std::defer_lock);
    if (k.capture_first()) capture_lock.lock();
    KillRun run =
        stopAndKill(select, evidenceOf(c, k, options_, k.capture_first() ? capture_ : nullptr),
                    flows_, *procfs_, *signaller_, options_, what);
    if (!run.refused) {
      for (auto& s : matched) *run.result.add_sessions() = std::move(s);
    }
    return finish(c, std::move(run));
  }

  if (c.has_kill_process()) {
    const auto& k = c.kill_process();
    int given = (k.pid() != 0) + !k.exe().empty() + !k.user().empty();
    if (given != 1) return refused(c, "kill-process needs exactly one of --pid, --exe, --user");
    std::function<bool(const ProcessInfo&)> root;
    std::string what;
    if (k.pid() != 0) {
      if (k.pid() < 0) return refused(c, fmt::format("--pid: {} is not a process id", k.pid()));
      int pid = k.pid();
      // A tree from a protected process (pid 1: the whole host) is refused outright: name the
      // processes below it instead.
      if (auto p = procfs_->read(pid, false); p && k.tree()) {
        if (auto why = protectedBecause(*p, options_.protection)) {
          return refused(c, fmt::format("--pid {} --tree: pid {} is protected ({}); a tree kill "
                                        "from it is refused, nothing killed",
                                        pid, pid, *why));
        }
      }
      root = [pid](const ProcessInfo& p) { return p.pid == pid; };
      what = fmt::format("--pid {}", pid);
    } else if (!k.exe().empty()) {
      std::string exe = k.exe();
      root = [exe](const ProcessInfo& p) { return p.exe == exe || p.exe == exe + " (deleted)"; };
      what = fmt::format("--exe {}", exe);
    } else {
      auto uid = procfs_->uidOfUser(k.user());
      if (!uid) return refused(c, fmt::format("--user: unknown user \"{}\"; nothing killed", k.user()));
      uint32_t u = *uid;
      root = [u](const ProcessInfo& p) { return p.uid == u; };
      what = fmt::format("--user {}", k.user());
    }
    bool tree = k.tree();
    Selector select = [root, tree](const std::vector<ProcessInfo>& all, const PinnedProcesses& pinned) {
      std::vector<int> pids;
      for (const auto& p : all) {
        if (root(p)) pids.push_back(p.pid);
      }
      if (tree) {
        // Descendants of the roots and of everything already stopped (a stopped process
        // keeps its children, so late forks are found under it).
        for (const auto& p : pinned.processes()) pids.push_back(p.pid);
        std::set<int> with;
        for (int r : pids) {
          for (int d : withDescendants(all, r)) with.insert(d);
        }
        pids.assign(with.begin(), with.end());
      }
      std::set<int> want(pids.begin(), pids.end());
      std::vector<ProcessInfo> out;
      for (const auto& p : all) {
        if (want.count(p.pid)) out.push_back(p);
      }
      return out;
    };
    spdlog::info("kill-process {}{} requested by {}", what, tree ? " --tree" : "", c.requested_by());
    std::unique_lock capture_lock(capture_mu_, std::defer_lock);
    if (k.capture_first()) capture_lock.lock();
    return finish(
        c, stopAndKill(select, evidenceOf(c, k, options_, k.capture_first() ? capture_ : nullptr),
                       flows_, *procfs_, *signaller_, options_, what));
  }

  return failed(c, "not a session or process command");
}

ProcessActionWorker::ProcessActionWorker(ProcessActions* actions, Done done,
                                         std::function<int64_t()> now_unix_ms)
    : actions_(actions), done_(std::move(done)), now_unix_ms_(std::move(now_unix_ms)) {}

ProcessActionWorker::~ProcessActionWorker() {
  stopping_ = true;
  thread_.stop();
}

void ProcessActionWorker::submit(const v1::Command& command) {
  thread_.post([this, command] { runOne(command); });
}

void ProcessActionWorker::runOne(const v1::Command& c) {
  if (stopping_) return;
  if (c.deadline_unix_ms() != 0 && now_unix_ms_() > c.deadline_unix_ms()) {
    done_(failed(c, "deadline passed before the agent got to the command: not run"));
    return;
  }
  // A command that throws is answered as failed; the agent and its other work go on.
  v1::CommandResult result;
  try {
    result = actions_->run(c);
  } catch (const std::exception& e) {
    spdlog::error("command {}: internal error: {}", c.id(), e.what());
    result = failed(c, fmt::format("internal error on the agent: {}", e.what()));
  }
  done_(result);
}

}  // namespace bulkhead::agent
