// `bulkhead policy check DIR`: validates exemption-set files without a controller.
#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "common/format.h"
#include "common/identity.h"
#include "common/policy.h"
#include "common/tenant_policy.h"

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
  auto library = loadTenantPolicies(dir);
  if (!library.ok()) {
    auto errors = splitLines(library.status().message());
    if (g.json) {
      printJson(io.out, nlohmann::json{{"ok", false}, {"dir", dir}, {"errors", errors}});
    } else {
      for (const auto& e : errors) io.err << e << "\n";
    }
    return kUsage;
  }
  // Which tenants use each set (by file: an opted-in shared set is the shared one).
  const std::vector<const ExemptionSet*> all = library->all();
  std::map<std::string, std::vector<std::string>> users;
  for (const auto& [name, set] : library->shared.sets) users[set.file].push_back(kDefaultTenant);
  for (const auto& [tenant, sets] : library->tenants) {
    for (const auto& [name, set] : sets.sets) users[set.file].push_back(tenant);
  }
  if (g.json) {
    nlohmann::json sets = nlohmann::json::array();
    for (const ExemptionSet* set : all) {
      sets.push_back({{"name", set->name},
                      {"file", set->file},
                      {"tenants", users[set->file]},
                      {"selector", selectorText(*set)},
                      {"rules", set->rules.size()},
                      {"description", set->description}});
    }
    printJson(io.out, nlohmann::json{{"ok", true}, {"dir", dir}, {"sets", sets}});
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {{"SET", "ATTACHED TO", "RULES", "FILE"}};
  if (!library->tenants.empty()) rows.front().insert(rows.front().begin() + 1, "TENANTS");
  for (const ExemptionSet* set : all) {
    rows.push_back({set->name, selectorText(*set), std::to_string(set->rules.size()), set->file});
    if (!library->tenants.empty()) {
      std::string tenants;
      for (const auto& t : users[set->file]) tenants += (tenants.empty() ? "" : ",") + t;
      rows.back().insert(rows.back().begin() + 1, tenants);
    }
  }
  printTable(io.out, rows);
  io.out << fmt::format("{}: {} exemption sets{}, all valid\n", dir, all.size(),
                        library->tenants.empty()
                            ? ""
                            : fmt::format(" ({} tenants with their own)", library->tenants.size()));
  return kOk;
}

}  // namespace

void addPolicyCommands(std::map<std::string, CommandInfo>& table) {
  table["policy check"] = {
      "validate a directory of exemption sets, tenants/ included (file:line errors)", policyCheck};
}

}  // namespace bulkhead::cli
