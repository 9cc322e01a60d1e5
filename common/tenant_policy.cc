#include "common/tenant_policy.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>

#include "common/format.h"
#include "common/identity.h"
#include "common/yaml_doc.h"

namespace bulkhead {
namespace {

const PolicyLibrary kNoSets;

// `all` or the names of a list, each checked against `available` (errors for `field`).
std::vector<std::string> chosenNames(const YAML::Node& value, int line, std::string_view field,
                                     std::string_view what,
                                     const std::vector<std::string>* available,
                                     YamlErrors& errors) {
  if (value.IsScalar() && value.Scalar() == "all") {
    return available == nullptr ? std::vector<std::string>{"all"} : *available;
  }
  std::vector<std::string> names;
  if (!value.IsSequence()) {
    errors.add(line, field,
               fmt::format("expected all or a list of {} names, found {}", what, kindOf(value)));
    return names;
  }
  for (const YAML::Node& item : value) {
    const int item_line = lineOf(item, line);
    auto name = scalarOf(item, item_line, field, fmt::format("a {} name", what), errors);
    if (!name) continue;
    if (available != nullptr &&
        std::find(available->begin(), available->end(), *name) == available->end()) {
      std::string known;
      for (const std::string& n : *available) known += (known.empty() ? "" : ", ") + n;
      errors.add(item_line, field,
                 fmt::format("unknown shared {} \"{}\" (shared: {})", what, *name,
                             known.empty() ? "none" : known));
      continue;
    }
    names.push_back(*name);
  }
  return names;
}

}  // namespace

TenantOptIn parseTenantOptIn(const std::string& text, const std::vector<std::string>* shared_sets,
                             const std::vector<std::string>* shared_playbooks, YamlErrors& errors) {
  TenantOptIn out;
  if (text.empty()) return out;
  auto doc = loadOneMapping(text, "opt-in",
                            "a mapping with shared: and playbooks: (each all, or a list of names)",
                            errors);
  if (!doc) return out;
  bool any = false;
  forEachEntry(*doc, 1, errors, [&](const std::string& key, const YAML::Node& value, int line) {
    if (key == "shared") {
      out.sets = chosenNames(value, line, key, "set", shared_sets, errors);
    } else if (key == "playbooks") {
      out.playbooks = chosenNames(value, line, key, "playbook", shared_playbooks, errors);
    } else {
      errors.add(line, key, "unknown field (expected shared or playbooks)");
      return;
    }
    any = true;
  });
  if (!any && errors.empty()) errors.add(1, "shared", "missing (required: shared or playbooks)");
  return out;
}

namespace {

// The shared sets an opt-in file names (its `playbooks:` is the playbooks' business).
std::vector<std::string> optedIn(const std::string& text, const PolicyLibrary& shared,
                                 YamlErrors& errors) {
  std::vector<std::string> sets;
  for (const auto& [name, set] : shared.sets) sets.push_back(name);
  // Any playbook name passes here: the playbooks' loader checks them against its library.
  return parseTenantOptIn(text, &sets, nullptr, errors).sets;
}

}  // namespace

const PolicyLibrary& TenantPolicies::of(std::string_view tenant) const {
  if (tenant == kDefaultTenant) return shared;
  const auto it = tenants.find(std::string(tenant));
  return it == tenants.end() ? kNoSets : it->second;
}

std::vector<const ExemptionSet*> TenantPolicies::all() const {
  std::vector<const ExemptionSet*> out;
  for (const auto& [name, set] : shared.sets) out.push_back(&set);
  for (const auto& [tenant, library] : tenants) {
    for (const auto& [name, set] : library.sets) {
      // An opted-in shared set is a copy (same file): listed once, as the shared one.
      const ExemptionSet* s = shared.find(name);
      if (s == nullptr || s->file != set.file) out.push_back(&set);
    }
  }
  return out;
}

absl::StatusOr<TenantPolicies> buildTenantPolicies(
    const PolicyFiles& shared, const std::map<std::string, TenantPolicyFiles>& tenants) {
  TenantPolicies out;
  std::vector<std::string> errors;
  auto shared_library = buildPolicyLibrary(shared);
  if (!shared_library.ok()) {
    errors.push_back(std::string(shared_library.status().message()));
  } else {
    out.shared = *std::move(shared_library);
  }
  for (const auto& [tenant, files] : tenants) {
    if (!isValidName(tenant) || tenant == kDefaultTenant) {
      errors.push_back(fmt::format(
          "tenants/{}: tenant: \"{}\" is not another tenant's name (1-63 of [A-Za-z0-9._-]; "
          "tenant default's sets are the directory's own)",
          tenant, tenant));
      continue;
    }
    auto own = buildPolicyLibrary(files.sets);
    if (!own.ok()) {
      errors.push_back(std::string(own.status().message()));
      continue;
    }
    YamlErrors opt_in_errors(files.opt_in.first);
    const std::vector<std::string> names = optedIn(files.opt_in.second, out.shared, opt_in_errors);
    if (!opt_in_errors.empty()) {
      errors.push_back(std::string(opt_in_errors.status().message()));
      continue;
    }
    PolicyLibrary library = *std::move(own);
    bool clash = false;
    for (const std::string& name : names) {
      if (const ExemptionSet* mine = library.find(name)) {
        errors.push_back(fmt::format("{}:{}: name: \"{}\" is also a shared set {} opts into ({})",
                                     mine->file, mine->name_line, name, tenant,
                                     files.opt_in.first));
        clash = true;
        continue;
      }
      library.sets.emplace(name, out.shared.sets.at(name));
    }
    if (!clash) out.tenants.emplace(tenant, std::move(library));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors));
  return out;
}

absl::StatusOr<TenantPolicies> loadTenantPolicies(const std::string& dir) {
  namespace fs = std::filesystem;
  auto top = readYamlDir(dir, "policy-dir");
  if (!top.ok()) return top.status();
  std::vector<std::string> errors = std::move(top->errors);
  std::map<std::string, TenantPolicyFiles> tenants;
  const fs::path tenants_dir = fs::path(dir) / "tenants";
  std::error_code ec;
  if (fs::is_directory(tenants_dir, ec)) {
    // The opt-in files: tenants/NAME.yaml.
    auto opt_ins = readYamlDir(tenants_dir.string(), "policy-dir");
    if (!opt_ins.ok()) return opt_ins.status();
    for (const auto& e : opt_ins->errors) errors.push_back("tenants/" + e);
    for (auto& [file, text] : opt_ins->files) {
      tenants[fs::path(file).stem().string()].opt_in = {"tenants/" + file, std::move(text)};
    }
    // The tenants' own sets: tenants/NAME/*.yaml.
    for (fs::directory_iterator it(tenants_dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      std::error_code type_ec;
      if (name.empty() || name.front() == '.' || !it->is_directory(type_ec)) continue;
      auto sets = readYamlDir(it->path().string(), "policy-dir");
      if (!sets.ok()) {
        errors.push_back(fmt::format("tenants/{}: {}", name, sets.status().message()));
        continue;
      }
      for (const auto& e : sets->errors) errors.push_back(fmt::format("tenants/{}/{}", name, e));
      TenantPolicyFiles& t = tenants[name];
      if (t.opt_in.first.empty()) t.opt_in.first = fmt::format("tenants/{}.yaml", name);
      for (auto& [file, text] : sets->files) {
        t.sets.emplace_back(fmt::format("tenants/{}/{}", name, file), std::move(text));
      }
    }
    if (ec) {
      errors.push_back(
          fmt::format("policy-dir: cannot list \"{}\": {}", tenants_dir.string(), ec.message()));
    }
  }
  auto built = buildTenantPolicies(top->files, tenants);
  if (!built.ok()) errors.push_back(std::string(built.status().message()));
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors));
  return built;
}

}  // namespace bulkhead
