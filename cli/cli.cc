#include "cli/cli.h"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdlib>
#include <exception>
#include <ostream>
#include <sstream>

#include "cli/args.h"
#include "common/identity.h"
#include "common/parse.h"
#include "common/text.h"
#include "common/version.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

// Where the global options land. They are accepted before or after the command.
struct GlobalFlags {
  GlobalOptions g;
  std::string timeout_text;
  bool help = false;
  bool help_all = false;
  bool version = false;
};

const char* envOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : fallback;
}

po::options_description globalOptions(GlobalFlags& f) {
  po::options_description global("global options");
  global.add_options()("controller",
                       po::value(&f.g.controller)->default_value(envOr("BULKHEAD_CONTROLLER", "")),
                       "controller ADDR:PORT; several controllers serving one database as "
                       "ADDR:PORT,ADDR:PORT...: the first that connects takes the call")(
      "identity", po::value(&f.g.identity)->default_value(envOr("BULKHEAD_IDENTITY", "")),
      "operator identity directory (ca.crt, tls.crt, tls.key)")(
      "tenant", po::value(&f.g.tenant)->default_value(envOr("BULKHEAD_TENANT", "")),
      "the tenant to act in (NAME, or '*' for every tenant you hold a role in); needed when "
      "you hold roles in several")(
      "incident", po::value(&f.g.incident)->default_value(envOr("BULKHEAD_INCIDENT", "")),
      "the open incident this command is part of (its id, e.g. INC-42): recorded in the "
      "incident's timeline")(
      "controller-name", po::value(&f.g.controller_name)->default_value(f.g.controller_name),
      "name in the controller's certificate (default: the identity's controller-name file)")(
      "json", po::bool_switch(&f.g.json), "print one machine-readable JSON document")(
      "timeout", po::value(&f.timeout_text)->default_value("10s"), "RPC timeout")(
      "help,h", po::bool_switch(&f.help), "show help")(
      "help-all", po::bool_switch(&f.help_all),
      "show help, then the options of every command (the manual page)")(
      "version", po::bool_switch(&f.version), "print the version and the git revision");
  return global;
}

void printUsage(std::ostream& os) {
  // "Usage: " as help2man reads it (the manual page's SYNOPSIS).
  os << "Usage: bulkhead [global options] COMMAND [ARGS]\n\ncommands:\n";
  size_t width = 0;
  for (const auto& [name, info] : commands()) width = std::max(width, name.size());
  for (const auto& [name, info] : commands()) {
    os << "  " << name << std::string(width + 2 - name.size(), ' ') << info.summary << "\n";
  }
  GlobalFlags defaults;
  os << "\n" << globalOptions(defaults);
  os << "\n`bulkhead completion bash` prints the bash completion script (every command and "
        "flag above).";
  os << "\nenvironment: BULKHEAD_CONTROLLER, BULKHEAD_IDENTITY, BULKHEAD_TENANT supply the "
        "defaults of --controller, --identity and --tenant.\nexit status: 0 done, 1 some target "
        "failed or controller "
        "unreachable, 2 bad usage or input.\n";
}

// printUsage, then every command's --help under a heading line "bulkhead NAME:" (a subsection
// of the manual page).
void printHelpAll(std::ostream& os) {
  printUsage(os);
  std::ostringstream discarded;
  for (const auto& [name, info] : commands()) {
    os << "\nbulkhead " << name << ":\n";
    Io io{os, discarded};
    info.run(GlobalOptions{}, {"--help"}, io);
  }
}

int completion(const GlobalOptions& /*g*/, const std::vector<std::string>& args, Io& io) {
  std::string shell;
  po::options_description opts("completion bash");
  opts.add_options()("shell", po::value(&shell), "the shell: bash (positional)");
  po::positional_options_description pos;
  pos.add("shell", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("completion", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (shell != "bash") {
    io.err << "bulkhead completion: "
           << (shell.empty() ? std::string("SHELL: required")
                             : "invalid shell \"" + shell + "\"")
           << ": bash is the one supported\n";
    return kUsage;
  }
  io.out << bashCompletionScript(bulkheadCompletion());
  return kOk;
}

}  // namespace

const std::map<std::string, CommandInfo>& commands() {
  static const auto* table = [] {
    auto* t = new std::map<std::string, CommandInfo>();
    addPkiCommands(*t);
    addHostCommands(*t);
    addContainmentCommands(*t);
    addBlockCommands(*t);
    addPolicyCommands(*t);
    addSignalCommands(*t);
    addIntegrationCommands(*t);
    addTokenCommands(*t);
    addTenantCommands(*t);
    addIncidentCommands(*t);
    addNotifyCommands(*t);
    addSessionCommands(*t);
    addEvidenceCommands(*t);
    return t;
  }();
  return *table;
}

int runCli(const std::vector<std::string>& argv, Io& io) {
  GlobalFlags flags;
  GlobalOptions& g = flags.g;
  const po::options_description global = globalOptions(flags);
  std::vector<std::string> rest;
  try {
    auto parsed = po::command_line_parser(argv).options(global).allow_unregistered().run();
    po::variables_map vm;
    po::store(parsed, vm);
    po::notify(vm);
    g.controller_name_given = !vm["controller-name"].defaulted();
    rest = po::collect_unrecognized(parsed.options, po::include_positional);
  } catch (const std::exception& e) {
    io.err << "bulkhead: " << e.what() << "\n";
    return kUsage;
  }
  if (flags.version) {
    io.out << versionLine("bulkhead") << "\n";
    return kOk;
  }
  if (flags.help_all) {
    printHelpAll(io.out);
    return kOk;
  }
  auto timeout = parseDuration("--timeout", flags.timeout_text);
  if (!timeout.ok()) {
    io.err << "bulkhead: " << timeout.status().message() << "\n";
    return kUsage;
  }
  g.timeout = *timeout;
  g.notes = &io.err;
  if (!g.tenant.empty() && g.tenant != "*" && !isValidName(g.tenant)) {
    io.err << "bulkhead: --tenant: invalid value \"" << escapeNonPrintable(g.tenant.substr(0, 64))
           << "\": a tenant name (1-63 characters of [A-Za-z0-9._-]) or '*'\n";
    return kUsage;
  }
  if (!g.incident.empty() && !isValidName(g.incident)) {
    io.err << "bulkhead: --incident: invalid value \""
           << escapeNonPrintable(g.incident.substr(0, 64))
           << "\": an incident id (1-63 characters of [A-Za-z0-9._-], e.g. INC-42)\n";
    return kUsage;
  }
  if (rest.empty()) {
    printUsage(flags.help ? io.out : io.err);
    return flags.help ? kOk : kUsage;
  }
  // Not in commands(): it prints a script, not a document of the --json contract.
  if (rest[0] == "completion") {
    return completion(g, std::vector<std::string>(rest.begin() + 1, rest.end()), io);
  }
  // Longest match: two-word commands ("pki init") before one-word ones.
  const auto& table = commands();
  std::string name = rest[0];
  size_t used = 1;
  if (rest.size() >= 2 && table.count(rest[0] + " " + rest[1]) != 0) {
    name = rest[0] + " " + rest[1];
    used = 2;
  }
  auto it = table.find(name);
  if (it == table.end()) {
    io.err << "bulkhead: unknown command \"" << rest[0] << "\" (see bulkhead --help)\n";
    return kUsage;
  }
  std::vector<std::string> args(rest.begin() + static_cast<long>(used), rest.end());
  if (flags.help) args.emplace_back("--help");
  try {
    return it->second.run(g, args, io);
  } catch (const std::exception& e) {
    io.err << "bulkhead " << name << ": " << e.what() << "\n";
    return kUsage;
  }
}

std::vector<ShellFlag> describeCommand(const std::string& name) {
  std::ostringstream discarded;
  std::vector<ShellFlag> flags;
  Io io{discarded, discarded, &flags};
  commands().at(name).run(GlobalOptions{}, {"--help"}, io);
  return flags;
}

std::vector<ShellFlag> globalFlags() {
  GlobalFlags unused;
  return shellFlagsOf(globalOptions(unused));
}

ShellCompletion bulkheadCompletion() {
  ShellCompletion spec{.program = "bulkhead", .flags = globalFlags(), .commands = {}};
  for (const auto& [name, info] : commands()) {
    std::vector<ShellFlag> flags = describeCommand(name);
    for (const auto& global : spec.flags) {
      const bool own = std::any_of(flags.begin(), flags.end(),
                                   [&](const ShellFlag& f) { return f.name == global.name; });
      if (!own) flags.push_back(global);  // --help: the command's
    }
    spec.commands.push_back({name, std::move(flags)});
  }
  return spec;
}

bool parseCommandArgs(const std::string& command, const std::vector<std::string>& args,
                      po::options_description& options,
                      const po::positional_options_description& positional,
                      po::variables_map& vm, Io& io, bool* help_shown) {
  *help_shown = false;
  options.add_options()("help,h", "show help for this command");
  if (io.described_flags != nullptr) *io.described_flags = shellFlagsOf(options);
  std::ostream& out = io.out;
  std::ostream& err = io.err;
  try {
    auto parsed = po::command_line_parser(args).options(options).positional(positional).run();
    po::store(parsed, vm);
    if (vm.count("help") != 0) {
      out << "usage: bulkhead " << command << " [options]\n" << options;
      *help_shown = true;
      return false;
    }
    po::notify(vm);
  } catch (const po::too_many_positional_options_error&) {
    err << "bulkhead " << command << ": too many arguments (see bulkhead " << command
        << " --help)\n";
    return false;
  } catch (const std::exception& e) {
    err << "bulkhead " << command << ": " << e.what() << "\n";
    return false;
  }
  return true;
}

}  // namespace bulkhead::cli
