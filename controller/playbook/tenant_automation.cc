#include "controller/playbook/tenant_automation.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

#include "common/format.h"
#include "common/identity.h"
#include "common/tenant_policy.h"
#include "common/yaml_doc.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;

// The text of `path`, relative name `name`; nullopt (with an error) when it cannot be read.
std::optional<std::string> readText(const fs::path& path, const std::string& name,
                                    std::vector<std::string>& errors) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in || (!in.good() && !in.eof())) {
    errors.push_back(fmt::format("{}:1: file: cannot read", name));
    return std::nullopt;
  }
  return text.str();
}

// The playbooks of `dir` (named `name`), none when it does not exist.
PlaybookSet playbooksIn(const fs::path& dir, const std::string& name,
                        std::vector<std::string>& errors) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  auto read = readYamlDir(dir.string(), "policy-dir");
  if (!read.ok()) {
    errors.emplace_back(read.status().message());
    return {};
  }
  for (const std::string& e : read->errors) errors.push_back(fmt::format("{}/{}", name, e));
  for (auto& [file, text] : read->files) file = fmt::format("{}/{}", name, file);
  auto set = buildPlaybookSet(read->files);
  if (!set.ok()) {
    errors.emplace_back(set.status().message());
    return {};
  }
  return *std::move(set);
}

// `defaults` with the fields the guardrail file `dir`/guardrails/automation.yaml names.
AutomationGuardrails guardrailsIn(const fs::path& dir, const std::string& name,
                                  const AutomationGuardrails& defaults,
                                  std::vector<std::string>& errors) {
  const fs::path file = dir / "guardrails" / "automation.yaml";
  const std::string file_name = name + "guardrails/automation.yaml";
  std::error_code ec;
  if (!fs::exists(file, ec)) return defaults;
  auto text = readText(file, file_name, errors);
  if (!text) return defaults;
  auto parsed = parseAutomationGuardrails(file_name, *text, defaults);
  if (!parsed.ok()) {
    errors.emplace_back(parsed.status().message());
    return defaults;
  }
  return *std::move(parsed);
}

}  // namespace

absl::StatusOr<std::map<std::string, TenantAutomation>> loadTenantAutomation(
    const std::string& dir, const BlockGuardrails& blocks) {
  std::vector<std::string> errors;
  const fs::path root(dir);
  std::map<std::string, TenantAutomation> out;
  TenantAutomation& install = out[kDefaultTenant];
  install.playbooks = playbooksIn(root / "playbooks", "playbooks", errors);
  install.guardrails = guardrailsIn(root, "", AutomationGuardrails{.blocks = blocks}, errors);
  std::vector<std::string> shared;
  for (const Playbook& p : install.playbooks.playbooks) shared.push_back(p.name);

  const fs::path tenants_dir = root / "tenants";
  std::error_code ec;
  if (fs::is_directory(tenants_dir, ec)) {
    // Every tenant named by a folder tenants/NAME/ or an opt-in file tenants/NAME.yaml.
    std::map<std::string, std::string> opt_ins;  // tenant -> opt-in file text
    std::set<std::string> folders;
    for (fs::directory_iterator it(tenants_dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& path = it->path();
      const std::string file = path.filename().string();
      if (file.empty() || file.front() == '.') continue;
      std::error_code type_ec;
      if (it->is_directory(type_ec)) {
        folders.insert(file);
      } else if (path.extension() == ".yaml" || path.extension() == ".yml") {
        if (auto text = readText(path, "tenants/" + file, errors)) {
          opt_ins[path.stem().string()] = *std::move(text);
        }
      }
    }
    if (ec) {
      errors.push_back(
          fmt::format("policy-dir: cannot list \"{}\": {}", tenants_dir.string(), ec.message()));
    }
    std::set<std::string> tenants = folders;
    for (const auto& [tenant, text] : opt_ins) tenants.insert(tenant);
    for (const std::string& tenant : tenants) {
      // loadTenantPolicies reports a folder that is not a tenant name; skipped here.
      if (!isValidName(tenant) || tenant == kDefaultTenant) continue;
      const std::string prefix = "tenants/" + tenant + "/";
      TenantAutomation mine;
      mine.playbooks =
          playbooksIn(tenants_dir / tenant / "playbooks", prefix + "playbooks", errors);
      mine.guardrails = guardrailsIn(tenants_dir / tenant, prefix, install.guardrails, errors);
      const auto opt_in = opt_ins.find(tenant);
      if (opt_in != opt_ins.end()) {
        YamlErrors opt_in_errors(fmt::format("tenants/{}.yaml", tenant));
        const TenantOptIn chosen =
            parseTenantOptIn(opt_in->second, nullptr, &shared, opt_in_errors);
        for (const std::string& e : opt_in_errors.lines()) errors.push_back(e);
        for (const std::string& name : chosen.playbooks) {
          if (const Playbook* own = mine.playbooks.find(name)) {
            errors.push_back(
                fmt::format("{}:{}: name: \"{}\" is also a shared playbook {} opts "
                            "into (tenants/{}.yaml)",
                            own->file, own->name_line, name, tenant, tenant));
            continue;
          }
          mine.playbooks.playbooks.push_back(*install.playbooks.find(name));
        }
        std::sort(mine.playbooks.playbooks.begin(), mine.playbooks.playbooks.end(),
                  [](const Playbook& a, const Playbook& b) { return a.name < b.name; });
      }
      out.emplace(tenant, std::move(mine));
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors));
  return out;
}

}  // namespace bulkhead::controller
