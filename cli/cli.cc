#include "cli/cli.h"

#include <cstdlib>
#include <exception>
#include <ostream>

#include <boost/program_options.hpp>

#include "cli/args.h"
#include "common/parse.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

void printUsage(std::ostream& os) {
  os << "usage: bulkhead [--controller ADDR:PORT] [--identity DIR] [--json] [--timeout DUR] "
        "COMMAND [ARGS]\n\ncommands:\n";
  for (const auto& [name, info] : commands()) {
    os << "  " << name;
    for (size_t i = name.size(); i < 18; ++i) os << ' ';
    os << info.summary << "\n";
  }
  os << "\nenvironment: BULKHEAD_CONTROLLER, BULKHEAD_IDENTITY supply the defaults of "
        "--controller and --identity.\nexit status: 0 done, 1 some target failed or controller "
        "unreachable, 2 bad usage or input.\n";
}

const char* envOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : fallback;
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
    addSessionCommands(*t);
    addEvidenceCommands(*t);
    return t;
  }();
  return *table;
}

int runCli(const std::vector<std::string>& argv, Io& io) {
  GlobalOptions g;
  std::string timeout_text;
  bool help = false;
  po::options_description global("global options");
  global.add_options()
      ("controller", po::value(&g.controller)->default_value(envOr("BULKHEAD_CONTROLLER", "")),
       "controller ADDR:PORT")
      ("identity", po::value(&g.identity)->default_value(envOr("BULKHEAD_IDENTITY", "")),
       "operator identity directory (ca.crt, tls.crt, tls.key)")
      ("controller-name", po::value(&g.controller_name)->default_value(g.controller_name),
       "name in the controller's certificate (default: the identity's controller-name file)")
      ("json", po::bool_switch(&g.json), "print one machine-readable JSON document")
      ("timeout", po::value(&timeout_text)->default_value("10s"), "RPC timeout")
      ("help,h", po::bool_switch(&help), "show help");
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
  auto timeout = parseDuration("--timeout", timeout_text);
  if (!timeout.ok()) {
    io.err << "bulkhead: " << timeout.status().message() << "\n";
    return kUsage;
  }
  g.timeout = *timeout;
  if (rest.empty()) {
    printUsage(help ? io.out : io.err);
    return help ? kOk : kUsage;
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
  if (help) args.emplace_back("--help");
  try {
    return it->second.run(g, args, io);
  } catch (const std::exception& e) {
    io.err << "bulkhead " << name << ": " << e.what() << "\n";
    return kUsage;
  }
}

}  // namespace bulkhead::cli

namespace bulkhead::cli {

bool parseCommandArgs(const std::string& command, const std::vector<std::string>& args,
                      po::options_description& options,
                      const po::positional_options_description& positional,
                      po::variables_map& vm, std::ostream& out, std::ostream& err,
                      bool* help_shown) {
  *help_shown = false;
  options.add_options()("help,h", "show help for this command");
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
