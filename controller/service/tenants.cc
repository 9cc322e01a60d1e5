#include "controller/service/tenants.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/format.h"
#include "common/parse.h"
#include "common/text.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"
#include "controller/service/tenancy.h"
#include "evidence/hash.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

absl::StatusOr<std::vector<std::string>> tenantNames(Store& store) {
  auto tenants = store.listTenants();
  if (!tenants.ok()) return tenants.status();
  std::vector<std::string> names;
  names.reserve(tenants->size());
  for (const auto& t : *tenants) names.push_back(t.name());
  return names;
}

}  // namespace

v1::OperatorRole toOperatorRole(Role role) {
  switch (role) {
    case Role::kNone: return v1::OPERATOR_ROLE_NONE;
    case Role::kViewer: return v1::OPERATOR_ROLE_VIEWER;
    case Role::kResponder: return v1::OPERATOR_ROLE_RESPONDER;
    case Role::kApprover: return v1::OPERATOR_ROLE_APPROVER;
    case Role::kAdmin: return v1::OPERATOR_ROLE_ADMIN;
  }
  return v1::OPERATOR_ROLE_UNSPECIFIED;
}

absl::StatusOr<Role> fromOperatorRole(v1::OperatorRole role) {
  switch (role) {
    case v1::OPERATOR_ROLE_NONE: return Role::kNone;
    case v1::OPERATOR_ROLE_VIEWER: return Role::kViewer;
    case v1::OPERATOR_ROLE_RESPONDER: return Role::kResponder;
    case v1::OPERATOR_ROLE_APPROVER: return Role::kApprover;
    case v1::OPERATOR_ROLE_ADMIN: return Role::kAdmin;
    default: break;
  }
  return absl::InvalidArgumentError(
      fmt::format("role: invalid value {}: expected viewer, responder, approver or admin",
                  static_cast<int>(role)));
}

TenantService::TenantService(const Clock& clock, Store& store) : clock_(clock), store_(store) {}

void TenantService::scopeCaller(Caller& caller, std::string_view requested) {
  if (!caller.refusal.ok() || !caller.is_operator) return;
  auto bindings = store_.listRoleBindings(caller.audit_name);
  auto existing = tenantNames(store_);
  if (!bindings.ok() || !existing.ok()) {
    const absl::Status why = bindings.ok() ? existing.status() : bindings.status();
    spdlog::error("operator {}: cannot read its bindings: {}", caller.audit_name, why);
    caller.refusal = absl::UnavailableError("the controller cannot read its store");
    return;
  }
  caller.grants.clear();
  if (caller.role != Role::kNone) {
    caller.grants.push_back(Grant{.tenant = kDefaultTenant, .role = caller.role, .hosts = {}});
  }
  for (const v1::RoleBinding& b : *bindings) {
    auto role = fromOperatorRole(b.role());
    auto hosts =
        b.hosts().empty() ? absl::StatusOr<Labels>(Labels{}) : parseSelector("hosts", b.hosts());
    if (!role.ok() || !hosts.ok()) {
      spdlog::warn("role binding {} of {} does not read; ignored", b.binding_id(),
                   b.operator_name());
      continue;
    }
    caller.grants.push_back(Grant{.tenant = b.tenant(), .role = *role, .hosts = *hosts});
  }
  // With no grant at all, grantsOf() would fall back to Caller::role: make "none" explicit.
  if (caller.grants.empty()) caller.role = Role::kNone;
  chooseTenants(caller, requested, *existing);
}

absl::StatusOr<std::vector<v1::Tenant>> TenantService::listTenants(const Caller& caller) {
  const std::string action = auditAction(OperatorAction::kListTenants);
  if (auto s = authorize(caller, OperatorAction::kListTenants); !s.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, "", "", s);
  }
  auto tenants = store_.listTenants();
  if (auto s = recordCall(store_, clock_, auditActor(caller), action, "", "", tenants.status());
      !s.ok()) {
    return s;
  }
  std::vector<v1::Tenant> out;
  for (v1::Tenant& t : *tenants) {
    if (inCallTenants(caller, t.name())) out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<v1::Tenant> TenantService::createTenant(const Caller& caller,
                                                       const std::string& name,
                                                       const std::string& reason) {
  const std::string action = auditAction(OperatorAction::kCreateTenant);
  absl::Status check = authorize(caller, OperatorAction::kCreateTenant);
  if (check.ok() && !isValidName(name)) {
    check = absl::InvalidArgumentError(
        fmt::format("name: invalid value \"{}\": use 1-63 characters of [A-Za-z0-9._-], not "
                    "starting with '.' or '-'",
                    escapeNonPrintable(name.substr(0, 64))));
  }
  if (check.ok() && isBlank(reason)) check = absl::InvalidArgumentError("reason: required");
  if (!check.ok())
    return recordCall(store_, clock_, auditActor(caller), action, name, reason, check);
  v1::Tenant t;
  t.set_name(name);
  t.set_created_unix_ms(clock_.nowUnixMs());
  t.set_created_by(caller.audit_name);
  t.set_reason(reason);
  const AuditEntry audit =
      callEntry(t.created_unix_ms(), auditActor(caller), action, name, reason, absl::OkStatus());
  if (absl::Status added = store_.addTenant(t, audit); !added.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, name, reason, added);
  }
  spdlog::info("tenant {} created by {}", name, caller.audit_name);
  return t;
}

absl::StatusOr<std::vector<v1::RoleBinding>> TenantService::listAccess(
    const Caller& caller, const std::string& operator_name) {
  const std::string action = auditAction(OperatorAction::kListAccess);
  if (auto s = authorize(caller, OperatorAction::kListAccess); !s.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, operator_name, "", s);
  }
  auto bindings = store_.listRoleBindings(operator_name);
  if (auto s = recordCall(store_, clock_, auditActor(caller), action, operator_name, "",
                          bindings.status());
      !s.ok()) {
    return s;
  }
  std::vector<v1::RoleBinding> out;
  for (v1::RoleBinding& b : *bindings) {
    if (!inCallTenants(caller, b.tenant())) continue;
    const bool admin = holdsOnEveryHost(caller, b.tenant(), Role::kAdmin);
    if (admin || b.operator_name() == caller.audit_name) out.push_back(std::move(b));
  }
  return out;
}

absl::StatusOr<v1::RoleBinding> makeRoleBinding(const std::string& operator_name,
                                                const std::string& tenant,
                                                v1::OperatorRole wire_role,
                                                const std::string& hosts,
                                                const std::string& created_by,
                                                const std::string& reason, int64_t now_unix_ms) {
  if (!isValidOperatorName(operator_name)) {
    return absl::InvalidArgumentError(
        fmt::format("operator: invalid value \"{}\": use 1-63 characters of [A-Za-z0-9._-] "
                    "(NAME@TENANT for an operator enrolled in a tenant)",
                    escapeNonPrintable(operator_name.substr(0, 64))));
  }
  auto role = fromOperatorRole(wire_role);
  if (!role.ok()) return role.status();
  if (*role == Role::kNone) {
    return absl::InvalidArgumentError(
        "role: expected viewer, responder, approver or admin (to take a role away, revoke its "
        "binding)");
  }
  Labels selector;
  if (!hosts.empty()) {
    auto parsed = parseSelector("hosts", hosts);
    if (!parsed.ok()) return parsed.status();
    selector = *std::move(parsed);
  }
  if (isBlank(reason)) return absl::InvalidArgumentError("reason: required");
  v1::RoleBinding b;
  b.set_operator_name(operator_name);
  b.set_tenant(tenant);
  b.set_role(toOperatorRole(*role));
  b.set_role_name(std::string(roleName(*role)));
  b.set_hosts(labelsText(selector));
  b.set_created_unix_ms(now_unix_ms);
  b.set_created_by(created_by);
  b.set_reason(reason);
  b.set_binding_id("rb-" + evidence::sha256Hex(fmt::format("{}\n{}\n{}\n{}", operator_name,
                                                           b.tenant(), b.hosts(), now_unix_ms))
                               .substr(0, 16));
  return b;
}

absl::StatusOr<v1::RoleBinding> TenantService::grantAccess(const Caller& caller,
                                                           const std::string& operator_name,
                                                           v1::OperatorRole wire_role,
                                                           const std::string& hosts,
                                                           const std::string& reason) {
  const std::string action = auditAction(OperatorAction::kGrantAccess);
  absl::Status check = authorize(caller, OperatorAction::kGrantAccess);
  const auto tenants = callTenants(caller);
  if (check.ok() && tenants.size() != 1) {
    check = absl::InvalidArgumentError(
        "tenant: a binding is in one tenant: choose it with --tenant NAME");
  }
  const int64_t now = clock_.nowUnixMs();
  const std::string tenant = tenants.empty() ? std::string() : tenants.front();
  absl::StatusOr<v1::RoleBinding> made =
      makeRoleBinding(operator_name, tenant, wire_role, hosts, caller.audit_name, reason, now);
  if (check.ok()) check = made.status();
  const std::string target = fmt::format("{}@{}", operator_name, tenant);
  if (!check.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, target, reason, check);
  }
  const v1::RoleBinding& b = *made;
  const std::string detail =
      fmt::format("{} {} on {}", b.binding_id(), b.role_name(),
                  b.hosts().empty() ? "every host" : fmt::format("hosts {}", b.hosts()));
  const AuditEntry audit =
      callEntry(now, auditActor(caller), action, target, reason, absl::OkStatus(), detail);
  if (absl::Status added = store_.addRoleBinding(b, audit); !added.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, target, reason, added);
  }
  spdlog::info("access granted by {}: {} {}", caller.audit_name, target, detail);
  return b;
}

absl::StatusOr<v1::RoleBinding> TenantService::revokeAccess(const Caller& caller,
                                                            const std::string& binding_id,
                                                            const std::string& reason) {
  const std::string action = auditAction(OperatorAction::kRevokeAccess);
  absl::Status check = authorize(caller, OperatorAction::kRevokeAccess);
  if (check.ok() && isBlank(reason)) check = absl::InvalidArgumentError("reason: required");
  if (check.ok()) {
    auto all = store_.listRoleBindings("");
    if (!all.ok()) {
      check = all.status();
    } else if (std::none_of(all->begin(), all->end(), [&](const v1::RoleBinding& b) {
                 return b.binding_id() == binding_id && inCallTenants(caller, b.tenant());
               })) {
      // Another tenant's binding reads exactly as an unknown one.
      check = absl::NotFoundError(fmt::format("no role binding \"{}\"", binding_id));
    }
  }
  if (!check.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, binding_id, reason, check);
  }
  const AuditEntry audit = callEntry(clock_.nowUnixMs(), auditActor(caller), action, binding_id,
                                     reason, absl::OkStatus());
  auto removed = store_.removeRoleBinding(binding_id, audit);
  if (!removed.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, binding_id, reason,
                      removed.status());
  }
  spdlog::info("access revoked by {}: {} ({} in {})", caller.audit_name, binding_id,
               removed->operator_name(), removed->tenant());
  return removed;
}

}  // namespace bulkhead::controller
