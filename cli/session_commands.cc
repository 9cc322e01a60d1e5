// `bulkhead sessions HOST`, `bulkhead kill-sessions HOST ...`, `bulkhead kill-process HOST ...`.
//
// Exit status: 0 done; 1 the agent failed (some process survived) or the host could not be
// reached; 2 bad usage, or the agent refused (only protected processes, unknown user or
// session: nothing killed).
#include <chrono>
#include <ostream>

#include <fmt/format.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/operator_client.h"
#include "cli/output.h"
#include "common/parse.h"
#include "common/text.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {


// The agent's wait and the call's deadline: killing waits for processes to exit.
constexpr uint32_t kWaitMs = 15000;
constexpr std::chrono::milliseconds kCallTimeout{20000};
// --capture-first: the capture, the kill and the upload (as `bulkhead capture` waits).
constexpr uint32_t kCaptureFirstWaitMs = 300000;
constexpr std::chrono::milliseconds kCaptureFirstCallTimeout{310000};
constexpr std::chrono::milliseconds kMaxCaptureLimit{600000};  // the agent's cap

// --capture-limit as milliseconds (0: not given, the agent's default); false (with the message
// written) when it is bad or given without --capture-first.
bool captureLimit(const char* command, const po::variables_map& vm, const std::string& limit,
                  uint32_t* ms, Io& io) {
  *ms = 0;
  if (limit.empty()) return true;
  if (!vm["capture-first"].as<bool>()) {
    io.err << fmt::format("bulkhead {}: --capture-limit: only with --capture-first\n", command);
    return false;
  }
  auto d = parseDuration("--capture-limit", limit);
  if (!d.ok()) {
    io.err << fmt::format("bulkhead {}: {}\n", command, std::string(d.status().message()));
    return false;
  }
  if (*d > kMaxCaptureLimit) {
    io.err << fmt::format(
        "bulkhead {}: --capture-limit: invalid value \"{}\": more than 10m (the agent's cap)\n",
        command, limit);
    return false;
  }
  *ms = static_cast<uint32_t>(d->count());
  return true;
}

// Capture first: the match's fields and the longer wait of `req` and of the call.
template <typename Match, typename Request>
void setCaptureFirst(bool first, uint32_t limit_ms, Match* m, Request* req,
                     std::chrono::milliseconds* call_timeout) {
  m->set_capture_first(first);
  m->set_capture_limit_ms(limit_ms);
  if (first) {
    req->set_wait_ms(kCaptureFirstWaitMs);
    *call_timeout = kCaptureFirstCallTimeout;
  }
}

// A text field as table text: "-" when empty. printTable escapes what is not printable.
std::string str(const std::string& s) { return s.empty() ? "-" : s; }

std::string startTime(int64_t start_unix) {
  return start_unix > 0 && start_unix < (int64_t{1} << 40) ? utcTime(start_unix * 1000) : "-";
}

void printProcesses(std::ostream& out,
                    const google::protobuf::RepeatedPtrField<v1::ProcessEntry>& items,
                    const char* title, bool with_why) {
  if (items.empty()) return;
  out << title << ":\n";
  std::vector<std::vector<std::string>> rows;
  if (with_why) {
    rows.push_back({"PID", "USER", "COMMAND", "WHY"});
  } else {
    rows.push_back({"PID", "USER", "COMMAND"});
  }
  for (const v1::ProcessEntry& p : items) {
    std::vector<std::string> row{std::to_string(p.pid()), str(p.user()), str(p.cmdline())};
    if (with_why) row.push_back(str(p.why()));
    rows.push_back(std::move(row));
  }
  printTable(out, rows);
}

void printSessions(std::ostream& out,
                   const google::protobuf::RepeatedPtrField<v1::SessionRecord>& sessions) {
  std::vector<std::vector<std::string>> rows = {
      {"SESSION", "USER", "TTY", "REMOTE", "SERVICE", "STARTED", "LEADER", "PROCESSES"}};
  for (const v1::SessionRecord& s : sessions) {
    rows.push_back({std::to_string(s.id()), str(s.user()), str(s.tty()), str(s.remote()),
                    str(s.service()), startTime(s.start_unix()), std::to_string(s.leader_pid()),
                    std::to_string(s.processes())});
  }
  printTable(out, rows);
}

// Prints the outcome of a kill and returns the exit code.
int printKill(const std::string& command, const GlobalOptions& g, const v1::HostActionResponse& r,
              Io& io) {
  if (g.json) {
    printJson(io.out, r);
  } else {
    const v1::KillProcessesResult& k = r.kill_processes();
    if (!k.sessions().empty()) {
      io.out << "sessions:\n";
      printSessions(io.out, k.sessions());
    }
    if (!k.note().empty()) io.out << escapeNonPrintable(k.note()) << "\n";
    if (k.frozen()) {
      io.out << fmt::format("frozen ({}) and captured before the kill:\n",
                            enumText(k.freeze_method()));
      std::vector<std::vector<std::string>> rows = {{"PID", "USER", "EXE", "SHA-256", "SOCKETS", "COMMAND"}};
      for (const v1::ProcessRecord& p : k.records()) {
        std::string socks;
        for (const v1::SocketRecord& s : p.sockets()) {
          if (s.kind() == v1::SOCKET_KIND_TCP) {
            socks += fmt::format("{}{}->{}", socks.empty() ? "" : " ", s.local(), s.remote());
          }
        }
        const std::string& hash = p.exe_sha256();
        rows.push_back({std::to_string(p.pid()), str(p.user()), str(p.exe()),
                        hash.empty() ? "-" : hash.substr(0, 16), socks.empty() ? "-" : socks,
                        str(p.cmdline())});
      }
      printTable(io.out, rows);
    }
    if (!k.capture_id().empty()) {
      if (k.has_capture()) {
        io.out << fmt::format(
            "captured first: capture {}, evidence {} ({} bytes); processes stopped {} ms for it\n",
            escapeNonPrintable(k.capture_id()), escapeNonPrintable(k.capture().evidence_id()),
            k.capture().size(), k.stopped_for_capture_ms());
      } else {
        io.out << fmt::format("capture {} FAILED, killed without it: {}\n",
                              escapeNonPrintable(k.capture_id()),
                              escapeNonPrintable(k.capture_error()));
      }
    }
    printProcesses(io.out, k.killed(), "killed", false);
    printProcesses(io.out, k.spared(), "spared (protected)", true);
    printProcesses(io.out, k.still_alive(), "STILL ALIVE", false);
    io.out << fmt::format("{} processes killed, {} spared, {} connections cut\n",
                          k.killed_size(), k.spared_size(), k.connections_cut());
  }
  if (!r.ok()) {
    io.err << fmt::format("bulkhead {}: {}: {}\n", command, escapeNonPrintable(r.host_id()),
                          escapeNonPrintable(r.error()));
    return kFailed;
  }
  return kOk;
}

int sessions(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string host;
  po::options_description opts("sessions HOST");
  opts.add_options()("host", po::value(&host)->required(), "host id");
  po::positional_options_description pos;
  pos.add("host", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("sessions", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto client = connectClient("sessions", g, io.err);
  if (!client) return kUsage;
  v1::ListSessionsRequest req;
  req.set_host(host);
  req.set_wait_ms(kWaitMs);
  v1::HostActionResponse resp;
  auto ctx = client->context(kCallTimeout);
  grpc::Status st = client->stub().ListSessions(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("sessions", client->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
  } else if (resp.ok() && resp.has_list_sessions()) {
    printSessions(io.out, resp.list_sessions().sessions());
  }
  if (!resp.ok()) {
    io.err << fmt::format("bulkhead sessions: {}: {}\n", escapeNonPrintable(host),
                          escapeNonPrintable(resp.error()));
    return kFailed;
  }
  return kOk;
}

int killSessions(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string host, user, from, reason;
  uint32_t session = 0;
  std::string capture_limit;
  po::options_description opts(
      "kill-sessions HOST (--user U | --session ID | --from CIDR | --all) [--freeze | "
      "--capture-first [--capture-limit DUR]] --reason TEXT");
  opts.add_options()
      ("host", po::value(&host)->required(), "host id")
      ("user", po::value(&user), "every session of this user")
      ("session", po::value(&session), "this session id (see `bulkhead sessions`)")
      ("from", po::value(&from), "every session whose remote address is in CIDR")
      ("all", po::bool_switch(), "every interactive (remote or tty) session")
      ("freeze", po::bool_switch(), "stop the processes and show their records before the kill")
      ("capture-first", po::bool_switch(),
       "stop the processes, take a full signed capture of the host (with their maps, fds and "
       "binaries) while they are stopped, then kill them (killed even if the capture fails)")
      ("capture-limit", po::value(&capture_limit),
       "longest the processes stay stopped for the capture (default 60s, at most 10m)")
      ("reason", po::value(&reason)->required(), "why (audited)");
  po::positional_options_description pos;
  pos.add("host", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("kill-sessions", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  bool all = vm["all"].as<bool>();
  int given = (vm.count("user") != 0) + (vm.count("session") != 0) + (vm.count("from") != 0) + all;
  if (given != 1) {
    io.err << "bulkhead kill-sessions: exactly one of --user, --session, --from, --all is required\n";
    return kUsage;
  }
  if (vm.count("user") && user.empty()) {
    io.err << "bulkhead kill-sessions: --user: empty user name\n";
    return kUsage;
  }
  if (vm.count("session") && session == 0) {
    io.err << "bulkhead kill-sessions: --session: invalid value \"0\": not a session id\n";
    return kUsage;
  }
  if (vm.count("from")) {
    if (auto c = parseCidr("--from", from); !c.ok()) {
      io.err << "bulkhead kill-sessions: " << c.status().message() << "\n";
      return kUsage;
    }
  }
  uint32_t limit_ms = 0;
  if (!captureLimit("kill-sessions", vm, capture_limit, &limit_ms, io)) return kUsage;
  auto client = connectClient("kill-sessions", g, io.err);
  if (!client) return kUsage;
  v1::KillSessionsRequest req;
  req.set_host(host);
  req.set_reason(reason);
  req.set_wait_ms(kWaitMs);
  auto* m = req.mutable_match();
  m->set_user(user);
  m->set_session_id(session);
  m->set_from_cidr(from);
  m->set_all(all);
  m->set_freeze(vm["freeze"].as<bool>());
  std::chrono::milliseconds call_timeout = kCallTimeout;
  setCaptureFirst(vm["capture-first"].as<bool>(), limit_ms, m, &req, &call_timeout);
  v1::HostActionResponse resp;
  auto ctx = client->context(call_timeout);
  grpc::Status st = client->stub().KillSessions(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("kill-sessions", client->controller(), st, io.err);
  return printKill("kill-sessions", g, resp, io);
}

int killProcess(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string host, exe, user, reason;
  int pid = 0;
  std::string capture_limit;
  po::options_description opts(
      "kill-process HOST (--pid N | --exe PATH | --user U) [--tree] [--capture-first "
      "[--capture-limit DUR]] --reason TEXT");
  opts.add_options()
      ("host", po::value(&host)->required(), "host id")
      ("pid", po::value(&pid), "this process")
      ("exe", po::value(&exe), "every process running this binary (absolute path)")
      ("user", po::value(&user), "every process of this user")
      ("tree", po::bool_switch(), "and their descendants")
      ("capture-first", po::bool_switch(),
       "stop the processes, take a full signed capture of the host (with their maps, fds and "
       "binaries) while they are stopped, then kill them (killed even if the capture fails)")
      ("capture-limit", po::value(&capture_limit),
       "longest the processes stay stopped for the capture (default 60s, at most 10m)")
      ("reason", po::value(&reason)->required(), "why (audited)");
  po::positional_options_description pos;
  pos.add("host", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("kill-process", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  int given = (vm.count("pid") != 0) + (vm.count("exe") != 0) + (vm.count("user") != 0);
  if (given != 1) {
    io.err << "bulkhead kill-process: exactly one of --pid, --exe, --user is required\n";
    return kUsage;
  }
  if (vm.count("pid") && pid <= 0) {
    io.err << fmt::format("bulkhead kill-process: --pid: invalid value \"{}\": not a process id\n", pid);
    return kUsage;
  }
  if (vm.count("exe") && (exe.empty() || exe.front() != '/')) {
    io.err << fmt::format("bulkhead kill-process: --exe: invalid value \"{}\": expected an absolute path\n", exe);
    return kUsage;
  }
  uint32_t limit_ms = 0;
  if (!captureLimit("kill-process", vm, capture_limit, &limit_ms, io)) return kUsage;
  auto client = connectClient("kill-process", g, io.err);
  if (!client) return kUsage;
  v1::KillProcessRequest req;
  req.set_host(host);
  req.set_reason(reason);
  req.set_wait_ms(kWaitMs);
  auto* m = req.mutable_match();
  if (vm.count("pid") != 0) {
    m->set_pid(pid);
  } else if (vm.count("exe") != 0) {
    m->set_exe(exe);
  } else {
    m->set_user(user);
  }
  m->set_tree(vm["tree"].as<bool>());
  std::chrono::milliseconds call_timeout = kCallTimeout;
  setCaptureFirst(vm["capture-first"].as<bool>(), limit_ms, m, &req, &call_timeout);
  v1::HostActionResponse resp;
  auto ctx = client->context(call_timeout);
  grpc::Status st = client->stub().KillProcess(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("kill-process", client->controller(), st, io.err);
  return printKill("kill-process", g, resp, io);
}

}  // namespace

void addSessionCommands(std::map<std::string, CommandInfo>& table) {
  table["sessions"] = {"HOST: login sessions (id, user, tty, remote, leader, processes)", sessions};
  table["kill-sessions"] = {
      "HOST (--user U | --session ID | --from CIDR | --all) [--freeze | --capture-first "
      "[--capture-limit DUR]] --reason TEXT",
      killSessions};
  table["kill-process"] = {
      "HOST (--pid N | --exe PATH | --user U) [--tree] [--capture-first [--capture-limit DUR]] "
      "--reason TEXT",
      killProcess};
}

}  // namespace bulkhead::cli
