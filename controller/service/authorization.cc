#include "controller/service/authorization.h"

#include <array>
#include <cstdlib>

#include "common/format.h"
#include "controller/service/tenancy.h"

namespace bulkhead::controller {

namespace {

using A = OperatorAction;
using S = ActionScope;

// Reads (records, hashes, listings) are open to viewers; whatever changes a host, or collects
// or reads host data (capture, evidence get and show), needs a responder; deciding an
// automatic action waiting for a person, an approver; managing who may do what, an admin.
constexpr std::array kRules = {
    ActionRule{A::kListHosts, "hosts", Role::kViewer, S::kHosts},
    ActionRule{A::kGetHost, "status", Role::kViewer, S::kHosts},
    ActionRule{A::kIsolate, "isolate", Role::kResponder, S::kHosts},
    ActionRule{A::kRelease, "release", Role::kResponder, S::kHosts},
    ActionRule{A::kListAudit, "audit", Role::kViewer, S::kTenant},
    ActionRule{A::kVerifyAudit, "audit-verify", Role::kViewer, S::kDefaultTenant},
    ActionRule{A::kExportAudit, "audit-export", Role::kViewer, S::kTenant},
    ActionRule{A::kBlock, "block", Role::kResponder, S::kHosts},
    ActionRule{A::kUnblock, "unblock", Role::kResponder, S::kHosts},
    ActionRule{A::kListBlocks, "blocks", Role::kViewer, S::kHosts},
    ActionRule{A::kKillConnections, "kill-connections", Role::kResponder, S::kHosts},
    ActionRule{A::kListSessions, "sessions", Role::kViewer, S::kHosts},
    ActionRule{A::kKillSessions, "kill-sessions", Role::kResponder, S::kHosts},
    ActionRule{A::kKillProcess, "kill-process", Role::kResponder, S::kHosts},
    ActionRule{A::kCapture, "capture", Role::kResponder, S::kHosts},
    ActionRule{A::kListEvidence, "evidence-list", Role::kViewer, S::kHosts},
    ActionRule{A::kGetEvidence, "evidence-get", Role::kResponder, S::kHosts},
    ActionRule{A::kVerifyEvidence, "evidence-verify", Role::kViewer, S::kHosts},
    ActionRule{A::kShowEvidence, "evidence-show", Role::kResponder, S::kHosts},
    ActionRule{A::kSubmitSignal, "signal", Role::kResponder, S::kTenant},
    ActionRule{A::kListSignals, "signals", Role::kViewer, S::kTenant},
    ActionRule{A::kPreviewSignal, "signal-preview", Role::kViewer, S::kTenant},
    ActionRule{A::kListApprovals, "approvals", Role::kViewer, S::kTenant},
    ActionRule{A::kApprove, "approve", Role::kApprover, S::kHosts},
    ActionRule{A::kReject, "reject", Role::kApprover, S::kHosts},
    ActionRule{A::kListIntegrations, "integrations", Role::kViewer, S::kTenant},
    ActionRule{A::kCreateIntegration, "integration-create", Role::kAdmin, S::kTenant},
    ActionRule{A::kRevokeIntegration, "integration-revoke", Role::kAdmin, S::kTenant},
    ActionRule{A::kCreateJoinToken, "token-create", Role::kAdmin, S::kTenant},
    ActionRule{A::kListJoinTokens, "tokens", Role::kAdmin, S::kTenant},
    ActionRule{A::kRevokeJoinToken, "token-revoke", Role::kAdmin, S::kTenant},
    ActionRule{A::kListTenants, "tenants", Role::kViewer, S::kHosts},
    ActionRule{A::kCreateTenant, "tenant-create", Role::kAdmin, S::kInstall},
    ActionRule{A::kListAccess, "access", Role::kViewer, S::kHosts},
    ActionRule{A::kGrantAccess, "access-grant", Role::kAdmin, S::kTenant},
    ActionRule{A::kRevokeAccess, "access-revoke", Role::kAdmin, S::kTenant},
    ActionRule{A::kSetHostLabels, "label", Role::kAdmin, S::kHosts},
    ActionRule{A::kRenewOperatorCertificate, "operator-renew", Role::kNone, S::kSelf},
    ActionRule{A::kOpenIncident, "incident-open", Role::kResponder, S::kHosts},
    ActionRule{A::kListIncidents, "incidents", Role::kViewer, S::kTenant},
    ActionRule{A::kShowIncident, "incident-show", Role::kViewer, S::kTenant},
    ActionRule{A::kNoteIncident, "incident-note", Role::kResponder, S::kHosts},
    ActionRule{A::kCloseIncident, "incident-close", Role::kResponder, S::kHosts},
    ActionRule{A::kReportIncident, "incident-report", Role::kViewer, S::kTenant},
    ActionRule{A::kListNotifyChannels, "notify-channels", Role::kViewer, S::kTenant},
    ActionRule{A::kTestNotify, "notify-test", Role::kResponder, S::kTenant},
};

constexpr bool inOrder() {
  for (size_t i = 0; i < kRules.size(); ++i) {
    if (static_cast<size_t>(kRules[i].action) != i) return false;
  }
  return true;
}
static_assert(inOrder(), "kRules: one row per OperatorAction, in declaration order");
static_assert(kRules.size() == static_cast<size_t>(A::kTestNotify) + 1,
              "kRules: a row for every OperatorAction");

// " in tenant acme" after a role, except for the single-team case (tenant default alone).
std::string suffixFor(const Caller& caller) {
  const std::string where = tenantsText(caller);
  return where == kDefaultTenant ? "" : fmt::format(" in {}", where);
}

}  // namespace

std::span<const ActionRule> actionRules() { return kRules; }

const ActionRule& ruleFor(OperatorAction action) {
  const auto i = static_cast<size_t>(action);
  if (i >= kRules.size()) std::abort();  // not an OperatorAction
  return kRules[i];
}

std::string_view actionName(OperatorAction action) { return ruleFor(action).name; }

bool needsIncidentUnderPolicy(OperatorAction action) {
  switch (action) {
    case A::kIsolate:
    case A::kRelease:
    case A::kBlock:
    case A::kUnblock:
    case A::kKillConnections:
    case A::kKillSessions:
    case A::kKillProcess:
    case A::kCapture: return true;
    default: return false;
  }
}

absl::Status authorize(const Caller& caller, OperatorAction action) {
  if (!caller.refusal.ok()) return caller.refusal;
  const ActionRule& rule = ruleFor(action);
  if (rule.scope == ActionScope::kSelf) {
    // The identity matters here, not the tenant choice (its refusal does not count).
    if (caller.is_operator) return absl::OkStatus();
    return absl::PermissionDeniedError(
        fmt::format("\"{}\" is not an operator identity", caller.audit_name));
  }
  if (!caller.tenant_refusal.ok()) return caller.tenant_refusal;
  const std::string where = tenantsText(caller);
  if (rule.scope == ActionScope::kInstall && !isInstallAdmin(caller)) {
    return absl::PermissionDeniedError(fmt::format(
        "operator \"{}\": {} is for the install's admins (admin in tenant default on every host)",
        caller.audit_name, rule.name));
  }
  if (rule.scope == ActionScope::kDefaultTenant && where != kDefaultTenant) {
    return absl::PermissionDeniedError(fmt::format(
        "{} is kept for tenant default only in this release (this call is for {}): it checks "
        "the whole chain, every tenant's rows",
        rule.name, where));
  }
  if (caller.all_tenants && rule.min_role > Role::kViewer && !isInstallAdmin(caller)) {
    return absl::PermissionDeniedError(
        fmt::format("operator \"{}\": {} across every tenant (--tenant '*') is for the "
                    "install's admins: choose one tenant with --tenant NAME",
                    caller.audit_name, rule.name));
  }
  const Role held = roleInCallTenants(caller, /*every_host=*/rule.scope != ActionScope::kHosts);
  if (held >= rule.min_role) {
    if (caller.incident.empty() && !caller.incident_required_by.empty() &&
        needsIncidentUnderPolicy(action)) {
      return absl::FailedPreconditionError(fmt::format(
          "--incident: required for {} in tenant {} (its guardrails say require_incident): "
          "name an open incident with --incident ID, or open one with bulkhead incident open "
          "ID --title TEXT",
          rule.name, caller.incident_required_by));
    }
    return absl::OkStatus();
  }
  if (held == Role::kNone) {
    return absl::PermissionDeniedError(
        fmt::format("operator \"{}\" has no role {}in {}", caller.audit_name,
                    rule.scope == ActionScope::kHosts ? "" : "on every host ", where));
  }
  if (held == Role::kViewer) {
    return absl::PermissionDeniedError(fmt::format("operator \"{}\" has role viewer{}: read only",
                                                   caller.audit_name, suffixFor(caller)));
  }
  return absl::PermissionDeniedError(
      fmt::format("operator \"{}\" has role {}{}: {} needs {}", caller.audit_name, roleName(held),
                  suffixFor(caller), rule.name, roleName(rule.min_role)));
}

std::string auditAction(OperatorAction action) { return std::string(actionName(action)); }

}  // namespace bulkhead::controller
