#include "controller/service/tenancy.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_join.h"
#include "common/format.h"

namespace bulkhead::controller {

std::vector<Grant> grantsOf(const Caller& caller) {
  if (!caller.grants.empty()) return caller.grants;
  if (!caller.is_operator || caller.role == Role::kNone) return {};
  return {Grant{.tenant = kDefaultTenant, .role = caller.role, .hosts = {}}};
}

bool isInstallAdmin(const Caller& caller) {
  const auto grants = grantsOf(caller);
  return std::any_of(grants.begin(), grants.end(), [](const Grant& g) {
    return g.tenant == kDefaultTenant && g.role == Role::kAdmin && g.hosts.empty();
  });
}

std::vector<std::string> tenantsOf(const Caller& caller, const std::vector<std::string>& existing) {
  std::set<std::string> out;
  if (isInstallAdmin(caller)) {
    out.insert(existing.begin(), existing.end());
  } else {
    const std::set<std::string> known(existing.begin(), existing.end());
    for (const Grant& g : grantsOf(caller)) {
      if (g.role > Role::kNone && known.count(g.tenant)) out.insert(g.tenant);
    }
  }
  return {out.begin(), out.end()};
}

void chooseTenants(Caller& caller, std::string_view requested,
                   const std::vector<std::string>& existing) {
  if (!caller.refusal.ok() || !caller.tenant_refusal.ok()) return;
  const std::vector<std::string> mine = tenantsOf(caller, existing);
  if (requested == kEveryTenant) {
    if (mine.empty()) {
      caller.tenant_refusal = absl::PermissionDeniedError(
          fmt::format("operator \"{}\" has no role in any tenant", caller.audit_name));
      return;
    }
    caller.tenants = mine;
    caller.all_tenants = true;
    return;
  }
  if (!requested.empty()) {
    if (std::find(mine.begin(), mine.end(), requested) == mine.end()) {
      // The same answer whether the tenant exists or not.
      caller.tenant_refusal = absl::PermissionDeniedError(fmt::format(
          "operator \"{}\" has no role in tenant \"{}\"", caller.audit_name, requested));
      return;
    }
    caller.tenants = {std::string(requested)};
    return;
  }
  if (mine.size() == 1) {
    caller.tenants = mine;
    return;
  }
  if (mine.empty()) {
    caller.tenant_refusal = absl::PermissionDeniedError(
        fmt::format("operator \"{}\" has no role in any tenant", caller.audit_name));
    return;
  }
  caller.tenant_refusal = absl::FailedPreconditionError(
      fmt::format("operator \"{}\" has roles in tenants {}: choose one with --tenant NAME (or "
                  "BULKHEAD_TENANT), or every one with --tenant '*'",
                  caller.audit_name, absl::StrJoin(mine, ", ")));
}

std::vector<std::string> callTenants(const Caller& caller) {
  if (caller.tenants.empty()) return {kDefaultTenant};
  return caller.tenants;
}

std::string tenantsText(const Caller& caller) {
  const auto tenants = callTenants(caller);
  if (tenants.size() == 1 && tenants.front() == kDefaultTenant) return kDefaultTenant;
  return fmt::format("{} {}", tenants.size() == 1 ? "tenant" : "tenants",
                     absl::StrJoin(tenants, ", "));
}

bool inCallTenants(const Caller& caller, std::string_view tenant) {
  const auto tenants = callTenants(caller);
  return std::find(tenants.begin(), tenants.end(), tenant) != tenants.end();
}

Role roleInCallTenants(const Caller& caller, bool every_host) {
  if (isInstallAdmin(caller)) return Role::kAdmin;
  Role best = Role::kNone;
  for (const Grant& g : grantsOf(caller)) {
    if (!inCallTenants(caller, g.tenant)) continue;
    if (every_host && !g.hosts.empty()) continue;
    best = std::max(best, g.role);
  }
  return best;
}

Role roleOnHost(const Caller& caller, const bulkhead::v1::HostSummary& host) {
  const Labels labels(host.labels().begin(), host.labels().end());
  return roleOn(caller, host.tenant().empty() ? std::string(kDefaultTenant) : host.tenant(),
                labels);
}

bool holdsOnEveryHost(const Caller& caller, std::string_view tenant, Role min_role) {
  if (!inCallTenants(caller, tenant)) return false;
  if (isInstallAdmin(caller)) return true;
  const auto grants = grantsOf(caller);
  return std::any_of(grants.begin(), grants.end(), [&](const Grant& g) {
    return g.tenant == tenant && g.hosts.empty() && g.role >= min_role;
  });
}

namespace {

// roleOn's rule with the caller's grants read once (hostsInScope asks for every host).
struct HostRoles {
  explicit HostRoles(const Caller& caller)
      : grants(grantsOf(caller)),
        tenants(callTenants(caller)),
        install_admin(isInstallAdmin(caller)) {}

  Role on(std::string_view tenant, const Labels& labels) const {
    if (std::find(tenants.begin(), tenants.end(), tenant) == tenants.end()) return Role::kNone;
    if (install_admin) return Role::kAdmin;
    Role best = Role::kNone;
    for (const Grant& g : grants) {
      if (g.tenant != tenant) continue;
      if (!g.hosts.empty() && !selectorMatches(g.hosts, labels)) continue;
      best = std::max(best, g.role);
    }
    return best;
  }

  std::vector<Grant> grants;
  std::vector<std::string> tenants;
  bool install_admin;
};

}  // namespace

Role roleOn(const Caller& caller, std::string_view tenant, const Labels& labels) {
  return HostRoles(caller).on(tenant, labels);
}

std::map<std::string, TargetHost> hostsInScope(const Caller& caller, Role min_role,
                                               std::map<std::string, TargetHost> known) {
  const HostRoles roles(caller);
  min_role = std::max(min_role, Role::kViewer);
  for (auto it = known.begin(); it != known.end();) {
    if (roles.on(it->second.tenant, it->second.labels) >= min_role) {
      ++it;
    } else {
      it = known.erase(it);
    }
  }
  return known;
}

bool readsEveryTenant(const Caller& caller) { return caller.all_tenants && isInstallAdmin(caller); }

std::vector<std::string> tenantsReadWhole(const Caller& caller) {
  if (readsEveryTenant(caller)) return {};
  std::vector<std::string> out;
  for (const std::string& t : callTenants(caller)) {
    if (holdsOnEveryHost(caller, t, Role::kViewer)) out.push_back(t);
  }
  return out;
}

absl::StatusOr<std::string> singleCallTenant(const Caller& caller, std::string_view what) {
  const std::vector<std::string> tenants = callTenants(caller);
  if (caller.all_tenants || tenants.size() != 1) {
    return absl::InvalidArgumentError(fmt::format(
        "tenant: {} belongs to one tenant: choose it with --tenant NAME, not '*'", what));
  }
  return tenants.front();
}

}  // namespace bulkhead::controller
