#include "agent/daemon/process_actions.h"

#include <signal.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "agent/linux/process_killer.h"
#include "common/format.h"
#include "common/json.h"

namespace bulkhead::agent {
namespace {

using nlohmann::json;
namespace v1 = bulkhead::v1;

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

json processJson(const ProcessInfo& p) {
  return json{{"pid", p.pid}, {"ppid", p.ppid}, {"user", p.user}, {"uid", p.uid},
              {"cmdline", p.cmdline.empty() ? fmt::format("[{}]", p.comm) : p.cmdline},
              {"exe", p.exe}};
}

json sessionJson(const SessionInfo& s) {
  return json{{"id", s.id},          {"user", s.user},
              {"loginuid", s.loginuid}, {"tty", s.tty},
              {"remote", s.remote},  {"service", s.service},
              {"leader_pid", s.leader_pid}, {"start_unix", s.start_unix},
              {"processes", s.pids.size()}, {"pids", s.pids},
              {"interactive", s.interactive()}};
}

// The evidence record of a stopped process.
json recordJson(const ProcessInfo& p, const std::map<uint64_t, const ProcNetSocket*>& tcp,
               ProcFs& procfs) {
  json j = processJson(p);
  j["comm"] = p.comm;
  j["loginuid"] = p.loginuid;
  j["sessionid"] = p.sessionid;
  j["start_unix"] = p.start_unix;
  auto hash = procfs.exeSha256(p.pid);
  j["exe_sha256"] = hash.ok() ? *hash : "";
  if (!hash.ok()) j["exe_sha256_error"] = fmt::format("{}", hash.status());
  json socks = json::array();
  for (uint64_t inode : p.socket_inodes) {
    auto it = tcp.find(inode);
    if (it == tcp.end()) {
      socks.push_back(json{{"inode", inode}, {"kind", "other"}});
    } else {
      socks.push_back(json{{"inode", inode}, {"kind", "tcp"}, {"local", it->second->local},
                           {"remote", it->second->remote}, {"state", it->second->state}});
    }
  }
  j["sockets"] = std::move(socks);
  return j;
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
  json doc = json::object();
  bool refused = false;
  bool failed = false;
  std::string error;
};

// The stop / re-scan / capture / cut / kill pipeline shared by kill-sessions and kill-process.
KillRun stopAndKill(const Selector& select, bool freeze, FlowKiller* flows, ProcFs& procfs,
                    ProcessSignaller& signaller, const ProcessActionsOptions& opt,
                    const std::string& what) {
  KillRun run;
  auto all = procfs.scan(true);
  if (!all.ok()) {
    run.failed = true;
    run.error = fmt::format("{}", all.status());
    return run;
  }
  PinnedProcesses pinned(&procfs, &signaller);
  std::map<int, json> spared;
  json skipped = json::array();
  auto plan = planKill(select(*all, pinned), opt.protection);
  for (const auto& s : plan.spared) {
    spared[s.process.pid] = processJson(s.process);
    spared[s.process.pid]["why"] = s.why;
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
        skipped.push_back(json{{"pid", p.pid}, {"cmdline", p.cmdline}, {"why", why}});
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
      spared[s.process.pid] = processJson(s.process);
      spared[s.process.pid]["why"] = s.why;
    }
    std::vector<ProcessInfo> fresh;
    for (const auto& p : more.kill) {
      if (!pinned.pinned(p.pid)) fresh.push_back(p);
    }
    if (fresh.empty() || stopBatch(fresh) == 0) break;
  }
  run.doc["scan_rounds"] = rounds;
  std::set<int> victims;
  for (const auto& p : pinned.processes()) victims.insert(p.pid);

  if (freeze) {
    // Every victim is stopped: read its record now (sockets as they are).
    auto sockets = procfs.tcpSockets();
    std::map<uint64_t, const ProcNetSocket*> tcp;
    for (const auto& s : sockets) tcp[s.inode] = &s;
    json records = json::array();
    for (const auto& p : pinned.processes()) {
      auto now = procfs.read(p.pid, true);
      records.push_back(
          recordJson(now && now->start_ticks == p.start_ticks ? *now : p, tcp, procfs));
    }
    run.doc["frozen"] = true;
    run.doc["freeze_method"] = "sigstop";
    run.doc["records"] = std::move(records);
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
      run.doc["cut_error"] = fmt::format("{}", report.status());
    }
  }
  run.doc["connections_cut"] = cut;

  json errors = json::array();
  for (const auto& [pid, err] : pinned.signalAll(SIGKILL)) {
    if (!err.empty()) errors.push_back(json{{"pid", pid}, {"error", err}});
  }
  // A SIGKILLed stopped process still has to be scheduled to die: wait, bounded.
  auto alive = pinned.waitExited(opt.kill_wait);
  std::set<int> alive_set(alive.begin(), alive.end());
  json killed = json::array();
  json not_dead = json::array();
  for (const auto& p : pinned.processes()) {
    if (alive_set.count(p.pid)) {
      not_dead.push_back(processJson(p));
    } else {
      killed.push_back(processJson(p));
    }
  }
  json spared_list = json::array();
  for (auto& [pid, j] : spared) spared_list.push_back(j);
  run.doc["killed"] = std::move(killed);
  run.doc["spared"] = std::move(spared_list);
  run.doc["skipped"] = std::move(skipped);
  run.doc["still_alive"] = std::move(not_dead);
  run.doc["errors"] = std::move(errors);
  if (!alive.empty()) {
    run.failed = true;
    run.error = fmt::format("{} process(es) still alive {} ms after SIGKILL: {}", alive.size(),
                            opt.kill_wait.count(), fmt::join(alive, ", "));
  }
  return run;
}

v1::CommandResult finish(const v1::Command& c, KillRun run) {
  if (run.refused) return refused(c, run.error);
  v1::CommandResult r;
  r.set_command_id(c.id());
  r.set_ok(!run.failed);
  r.set_error(run.error);
  r.set_result_json(dumpJson(run.doc));
  return r;
}

}  // namespace

v1::CommandResult ProcessActions::run(const v1::Command& c) {
  if (c.has_list_sessions()) {
    auto list = sessions_->sessions();
    if (!list.ok()) return failed(c, fmt::format("cannot list sessions: {}", list.status()));
    json doc{{"source", sessions_->name()}, {"sessions", json::array()}};
    for (const auto& s : *list) doc["sessions"].push_back(sessionJson(s));
    v1::CommandResult r;
    r.set_command_id(c.id());
    r.set_ok(true);
    r.set_result_json(dumpJson(doc));
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
    json matched = json::array();
    for (const auto& s : *list) {
      if (sessionMatches(s, m)) {
        ids.insert(s.id);
        matched.push_back(sessionJson(s));
      }
    }
    if (m.session_id && ids.empty()) {
      return refused(c, fmt::format("--session: no session {} on this host; nothing killed",
                                    *m.session_id));
    }
    if (ids.empty()) {
      json doc{{"sessions", json::array()}, {"killed", json::array()}, {"spared", json::array()},
               {"note", fmt::format("{} matches no session; nothing killed", what)}};
      v1::CommandResult r;
      r.set_command_id(c.id());
      r.set_ok(true);
      r.set_result_json(dumpJson(doc));
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
    KillRun run = stopAndKill(select, k.freeze(), flows_, *procfs_, *signaller_, options_, what);
    if (!run.refused) run.doc["sessions"] = std::move(matched);
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
    return finish(c, stopAndKill(select, false, flows_, *procfs_, *signaller_, options_, what));
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
