#include "agent/core/config.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <sstream>

#include <boost/program_options.hpp>

#include "absl/status/status.h"
#include "agent/core/signal_args.h"
#include "common/format.h"
#include "common/identity.h"

namespace bulkhead::agent {
namespace po = boost::program_options;
namespace {

po::options_description options() {
  po::options_description o("bulkhead-agent options");
  o.add_options()("controller", po::value<std::vector<std::string>>()->composing(),
                  "controller ADDR:PORT (name or IP literal); repeatable: the replicas of one "
                  "controller, tried in turn until one answers")(
      "identity", po::value<std::string>(), "identity DIR holding ca.crt, tls.crt, tls.key")(
      "state-dir", po::value<std::string>(), "state DIR (desired state, pinned IPs, agent.sock)")(
      "label", po::value<std::vector<std::string>>()->composing(), "label k=v (repeatable)")(
      "controller-name", po::value<std::string>(),
      "TLS name expected in the controller certificate (default bulkhead-controller)")(
      "log-format", po::value<std::string>(), "text | json (default text)")(
      "log-level", po::value<std::string>(),
      "trace | debug | info | warn | error | critical | off (default info)")(
      "protect-exe", po::value<std::vector<std::string>>()->composing(),
      "never kill processes running this absolute exe path (repeatable)")(
      "protect-comm", po::value<std::vector<std::string>>()->composing(),
      "never kill processes with this name (comm; repeatable)")(
      "capture-spool-dir", po::value<std::string>(),
      "DIR for evidence bundles not yet acknowledged by the controller (default "
      "<state-dir>/evidence)")(
      "renew-before", po::value<std::string>(),
      "ask the controller to renew this agent's certificate when it ends within DUR (default "
      "30d; a controller without --ca-key refuses, and `hosts` flags the certificate)")(
      "keep-resident-pages", po::bool_switch(),
      "keep clean library pages mapped while idle (by default they are given back 15 s after "
      "start and every 5 min; the first command after idling maps back what it runs)")(
      "test-protocol", po::value<std::string>(),
      "testing only: announce protocol MAJOR.MINOR instead of this build's")(
      "test-hang-collector", po::bool_switch(),
      "testing only: adds a collector that never returns, to prove time limits")(
      "allow-root-netns", po::bool_switch(),
      "allow enforcement in the initial network namespace (real hosts only)")(
      "restore", po::bool_switch(), "apply the persisted desired state and exit (boot)")(
      "status", po::bool_switch(), "print the running agent's status and exit")(
      "help", po::bool_switch(), "print this help")("version", po::bool_switch(),
                                                    "print the version");
  return o;
}

absl::Status invalid(std::string_view flag, std::string_view value, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("{}: invalid value \"{}\": {}", flag, value, why));
}

// DNS-ish name checked against the controller certificate.
bool isValidTlsName(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
           c == ':';
  });
}

// The same controller: the port, and the host as an address (IP literals) or a name (without
// case).
bool sameController(const HostPort& a, const HostPort& b) {
  if (a.port != b.port) return false;
  for (int family : {AF_INET, AF_INET6}) {
    std::array<unsigned char, sizeof(in6_addr)> x{}, y{};
    const bool xa = inet_pton(family, a.host.c_str(), x.data()) == 1;
    const bool ya = inet_pton(family, b.host.c_str(), y.data()) == 1;
    if (xa || ya) return xa && ya && x == y;
  }
  return std::equal(a.host.begin(), a.host.end(), b.host.begin(), b.host.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

}  // namespace

std::string agentUsage() {
  std::ostringstream ss;
  // "Usage:" and "or:" as help2man reads them (the manual page's SYNOPSIS).
  ss << "Usage: bulkhead-agent --controller ADDR:PORT [--controller ADDR:PORT]... --identity DIR "
        "--state-dir DIR [--label k=v]...\n"
        "  or:  bulkhead-agent --restore --state-dir DIR\n"
        "  or:  bulkhead-agent status --state-dir DIR\n"
        "  or:  bulkhead-agent enroll --token TOKEN [--host-id ID] [--identity DIR]\n"
        "  or:  bulkhead-agent signal|wazuh-active-response|sshguard-backend ... --help\n"
        "  or:  bulkhead-agent completion bash\n\n"
        "commands:\n"
        "  status              print the running agent's status\n"
        "  enroll              get this server's identity with a join token (see its --help)\n"
        "  signal, wazuh-active-response, sshguard-backend\n"
        "                      report detections (see their --help)\n"
        "  completion bash     print the bash completion script\n\n"
     << options();
  return ss.str();
}

ShellCompletion agentCompletion() {
  const std::vector<ShellFlag> flags = shellFlagsOf(options());
  return {.program = "bulkhead-agent",
          .flags = flags,
          .commands = {{"status", flags},
                       // agent/daemon/enroll_command.cc's flags.
                       {"enroll",
                        {{"--help", false},
                         {"--token", true},
                         {"--token-file", true},
                         {"--host-id", true},
                         {"--identity", true},
                         {"--timeout", true}}},
                       {"signal", reportFlags(ReportMode::kSignal)},
                       {"wazuh-active-response", reportFlags(ReportMode::kWazuh)},
                       {"sshguard-backend", reportFlags(ReportMode::kSshguard)},
                       {"completion", {}}}};
}

absl::StatusOr<AgentConfig> parseAgentArgs(const std::vector<std::string>& raw) {
  std::vector<std::string> args = raw;
  bool status_command = false;
  if (!args.empty() && args.front() == "status") {
    status_command = true;
    args.erase(args.begin());
  }
  po::variables_map vm;
  try {
    auto opts = options();
    // No positional arguments: a stray word is collected here and reported, never ignored.
    opts.add_options()("stray-argument", po::value<std::vector<std::string>>());
    po::positional_options_description stray;
    stray.add("stray-argument", -1);
    po::store(po::command_line_parser(args).options(opts).positional(stray).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return absl::InvalidArgumentError(fmt::format("{} (see --help)", e.what()));
  }

  if (vm.count("stray-argument")) {
    return absl::InvalidArgumentError(
        fmt::format("unexpected argument \"{}\" (see --help)",
                    vm["stray-argument"].as<std::vector<std::string>>().front()));
  }
  AgentConfig c;
  if (vm["help"].as<bool>()) {
    c.mode = AgentMode::kHelp;
    return c;
  }
  if (vm["version"].as<bool>()) {
    c.mode = AgentMode::kVersion;
    return c;
  }
  int modes = (vm["restore"].as<bool>() ? 1 : 0) + ((vm["status"].as<bool>() || status_command) ? 1 : 0);
  if (modes > 1) return absl::InvalidArgumentError("--restore and status are exclusive");
  if (vm["restore"].as<bool>()) c.mode = AgentMode::kRestore;
  if (vm["status"].as<bool>() || status_command) c.mode = AgentMode::kStatus;

  auto get = [&](const char* name) -> std::string {
    return vm.count(name) ? vm[name].as<std::string>() : std::string();
  };

  if (!vm.count("state-dir")) return absl::InvalidArgumentError("--state-dir: required");
  c.state_dir = get("state-dir");
  if (c.state_dir.empty()) return invalid("--state-dir", "", "empty path");

  if (vm.count("log-format")) c.log_format = get("log-format");
  if (c.log_format != "text" && c.log_format != "json") {
    return invalid("--log-format", c.log_format, "expected text or json");
  }
  if (vm.count("log-level")) c.log_level = get("log-level");
  static constexpr std::array<std::string_view, 7> kLevels = {"trace", "debug", "info", "warn",
                                                             "error", "critical", "off"};
  if (std::find(kLevels.begin(), kLevels.end(), c.log_level) == kLevels.end()) {
    return invalid("--log-level", c.log_level,
                   "expected trace, debug, info, warn, error, critical or off");
  }
  c.allow_root_netns = vm["allow-root-netns"].as<bool>();

  if (c.mode == AgentMode::kStatus) {
    for (const char* f : {"controller", "identity", "label", "controller-name", "capture-spool-dir",
                          "renew-before"}) {
      if (vm.count(f)) return absl::InvalidArgumentError(fmt::format("--{}: not used by status", f));
    }
    return c;
  }
  if (c.mode == AgentMode::kRestore) {
    for (const char* f : {"controller", "identity", "label", "controller-name", "capture-spool-dir",
                          "renew-before"}) {
      if (vm.count(f)) {
        return absl::InvalidArgumentError(
            fmt::format("--{}: not used by --restore (it reads the state dir only)", f));
      }
    }
    return c;
  }

  if (!vm.count("controller")) return absl::InvalidArgumentError("--controller: required (ADDR:PORT)");
  std::vector<std::string> controller_texts;
  for (const auto& text : vm["controller"].as<std::vector<std::string>>()) {
    auto hp = parseHostPort("--controller", text);
    if (!hp.ok()) return hp.status();
    for (size_t i = 0; i < c.controllers.size(); ++i) {
      if (sameController(c.controllers[i], *hp)) {
        return invalid(
            "--controller", text,
            fmt::format("the same controller as \"{}\", given before", controller_texts[i]));
      }
    }
    c.controllers.push_back(*std::move(hp));
    controller_texts.push_back(text);
  }
  c.controller = c.controllers.front();
  if (!vm.count("identity")) return absl::InvalidArgumentError("--identity: required (DIR)");
  c.identity_dir = get("identity");
  if (c.identity_dir.empty()) return invalid("--identity", "", "empty path");
  if (vm.count("controller-name")) {
    c.controller_name = get("controller-name");
    c.controller_name_given = true;
  }
  if (!isValidTlsName(c.controller_name)) {
    return invalid("--controller-name", c.controller_name, "expected a DNS name");
  }
  if (vm.count("protect-exe")) {
    for (const auto& exe : vm["protect-exe"].as<std::vector<std::string>>()) {
      if (exe.empty() || exe.front() != '/') return invalid("--protect-exe", exe, "expected an absolute path");
      c.protect_exes.push_back(exe);
    }
  }
  if (vm.count("protect-comm")) {
    for (const auto& comm : vm["protect-comm"].as<std::vector<std::string>>()) {
      if (comm.empty() || comm.size() > 15) {
        return invalid("--protect-comm", comm, "expected a process name of 1 to 15 characters");
      }
      c.protect_comms.push_back(comm);
    }
  }
  c.capture_spool_dir = c.state_dir / "evidence";
  if (vm.count("capture-spool-dir")) {
    c.capture_spool_dir = get("capture-spool-dir");
    if (c.capture_spool_dir.empty()) return invalid("--capture-spool-dir", "", "empty path");
  }
  if (vm.count("renew-before")) {
    auto d = parseDuration("--renew-before", get("renew-before"));
    if (!d.ok()) return d.status();
    c.renew_before = *d;
  }
  c.keep_resident_pages = vm["keep-resident-pages"].as<bool>();
  c.test_hang_collector = vm["test-hang-collector"].as<bool>();
  if (vm.count("test-protocol")) {
    const std::string text = get("test-protocol");
    if (auto s = parseProtocolVersion(text, &c.protocol); !s.ok()) {
      return invalid("--test-protocol", text, "expected MAJOR.MINOR, e.g. 1.0");
    }
  }
  if (vm.count("label")) {
    for (const auto& text : vm["label"].as<std::vector<std::string>>()) {
      auto kv = parseLabel("--label", text);
      if (!kv.ok()) return kv.status();
      if (c.labels.count(kv->first)) {
        return invalid("--label", text, fmt::format("label \"{}\" given twice", kv->first));
      }
      c.labels.insert(*std::move(kv));
    }
  }
  return c;
}

}  // namespace bulkhead::agent
