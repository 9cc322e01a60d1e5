// `bulkhead policy check DIR`: validates exemption-set files without a controller.
#include <ostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "common/format.h"
#include "common/policy.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

std::string selectorText(const ExemptionSet& set) {
  if (set.all_hosts) return "*";
  if (!set.selector) return "-";
  std::string out;
  for (const auto& [k, v] : *set.selector) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

std::vector<std::string> splitLines(absl::string_view text) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      if (!cur.empty()) lines.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

int policyCheck(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string dir;
  po::options_description opts("policy check DIR");
  opts.add_options()("dir", po::value(&dir)->required(), "policy directory");
  po::positional_options_description pos;
  pos.add("dir", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("policy check", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto library = loadPolicyDir(dir);
  if (!library.ok()) {
    auto errors = splitLines(library.status().message());
    if (g.json) {
      printJson(io.out, nlohmann::json{{"ok", false}, {"dir", dir}, {"errors", errors}});
    } else {
      for (const auto& e : errors) io.err << e << "\n";
    }
    return kUsage;
  }
  if (g.json) {
    nlohmann::json sets = nlohmann::json::array();
    for (const auto& [name, set] : library->sets) {
      sets.push_back({{"name", name}, {"file", set.file}, {"selector", selectorText(set)},
                      {"rules", set.rules.size()}, {"description", set.description}});
    }
    printJson(io.out, nlohmann::json{{"ok", true}, {"dir", dir}, {"sets", sets}});
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {{"SET", "ATTACHED TO", "RULES", "FILE"}};
  for (const auto& [name, set] : library->sets) {
    rows.push_back({name, selectorText(set), std::to_string(set.rules.size()), set.file});
  }
  printTable(io.out, rows);
  io.out << fmt::format("{}: {} exemption sets, all valid\n", dir, library->sets.size());
  return kOk;
}

}  // namespace

void addPolicyCommands(std::map<std::string, CommandInfo>& table) {
  table["policy check"] = {"validate a directory of exemption sets (file:line errors)",
                           policyCheck};
}

}  // namespace bulkhead::cli
