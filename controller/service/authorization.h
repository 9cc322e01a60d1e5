// Who may do what: one table of operator actions, each with the audit name its rows carry and
// the least role that may ask for it, and the one check every front door (the gRPC operator
// service, and any later webhook or tenant API) applies before any work.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/identity.h"
#include "common/parse.h"

namespace bulkhead::controller {

// Every operator action. The names are the audit trail's `action` column.
enum class OperatorAction {
  kListHosts,        // hosts
  kGetHost,          // status
  kIsolate,          // isolate
  kRelease,          // release
  kListAudit,        // audit
  kVerifyAudit,      // audit-verify
  kExportAudit,      // audit-export
  kBlock,            // block
  kUnblock,          // unblock
  kListBlocks,       // blocks
  kKillConnections,  // kill-connections
  kListSessions,     // sessions
  kKillSessions,     // kill-sessions
  kKillProcess,      // kill-process
  kCapture,          // capture
  kListEvidence,     // evidence-list
  kGetEvidence,      // evidence-get
  kVerifyEvidence,   // evidence-verify
  kShowEvidence,     // evidence-show
  kSubmitSignal,     // signal
  kListSignals,      // signals
  kPreviewSignal,    // signal-preview
  kListApprovals,    // approvals
  kApprove,          // approve
  kReject,           // reject

  // Webhook integrations (service/integrations.h).
  kListIntegrations,   // integrations
  kCreateIntegration,  // integration-create
  kRevokeIntegration,  // integration-revoke

  // Join tokens for enrollment (service/enrollment.h).
  kCreateJoinToken,  // token-create
  kListJoinTokens,   // tokens
  kRevokeJoinToken,  // token-revoke

  // Tenants and role bindings (service/tenants.h).
  kListTenants,               // tenants
  kCreateTenant,              // tenant-create
  kListAccess,                // access
  kGrantAccess,               // access-grant
  kRevokeAccess,              // access-revoke
  kSetHostLabels,             // label
  kRenewOperatorCertificate,  // operator-renew
  kOpenIncident,              // incident-open
  kListIncidents,             // incidents
  kShowIncident,              // incident-show
  kNoteIncident,              // incident-note
  kCloseIncident,             // incident-close
  kReportIncident,            // incident-report
  // Notification channels (service/notifications.h).
  kListNotifyChannels,  // notify-channels
  kTestNotify,          // notify-test
};

// Where an action's role is looked for (tenancy.h).
enum class ActionScope {
  kHosts,          // any binding in the call's tenants; the hosts it reaches are filtered by
                   // the caller's role on each (hostsInScope)
  kTenant,         // a binding on every host of the call's tenant(s)
  kDefaultTenant,  // the same, and the call's tenant must be "default": what it reads spans
                   // every tenant (the whole audit chain's check), so no other tenant may
  kInstall,        // the install's admins only (admin in tenant "default" on every host)
  kSelf,           // the caller's own identity: any operator, whatever its roles and tenants
};

struct ActionRule {
  OperatorAction action;
  std::string_view name;  // the audit action
  Role min_role;          // the least role allowed to ask for it
  ActionScope scope;
};

// The table, one row per OperatorAction in declaration order.
std::span<const ActionRule> actionRules();
const ActionRule& ruleFor(OperatorAction action);
std::string_view actionName(OperatorAction action);
// The same as a string: the `action` of the audit rows this action writes.
std::string auditAction(OperatorAction action);

// One role of a caller in one tenant, on the hosts whose labels match `hosts` (empty: every
// host of the tenant).
struct Grant {
  std::string tenant;
  Role role = Role::kViewer;
  Labels hosts;
};

// The caller of one operator call, as the front door established it (for gRPC: the client
// certificate, checked against the CRL, its bindings and the tenant it chose).
struct Caller {
  std::string audit_name;  // operator name, or "KIND:CN" for a non-operator, or "unauthenticated"
  bool is_operator = false;
  std::string cert_serial;  // the certificate the call came with (PeerIdentity::serial)
  // Without `grants`: the caller holds `role` in tenant "default" on every host (the callers
  // the controller makes itself: playbooks, tests).
  Role role = Role::kViewer;
  std::vector<Grant> grants;         // the certificate's role in "default" and the store's bindings
  std::vector<std::string> tenants;  // the call's tenants; empty: "default" alone
  bool all_tenants = false;          // chosen as "*": every tenant of the caller
  absl::Status refusal;  // non-OK: every call of this caller is refused with it
  // Non-OK: no tenant could be chosen (chooseTenants); every call is refused with it but those
  // about the caller's own identity (ActionScope::kSelf).
  absl::Status tenant_refusal;
  // The incident the call is part of (`--incident ID`, an open incident of the call's one
  // tenant: IncidentService::scopeCaller); "" for none. Every audit row of the call names it.
  std::string incident;
  // A tenant of the call whose guardrails say `require_incident: true` (engine.h); "" for
  // none. Then an action that changes containment or collects evidence needs `incident`.
  std::string incident_required_by;
};

// The actions a `require_incident` policy covers: those that change a host's containment or
// collect its data (isolate, release, block, unblock, kill-connections, kill-sessions,
// kill-process, capture). Dry runs of them too: they are audited as the action.
bool needsIncidentUnderPolicy(OperatorAction action);

// OK when `caller` may ask for `action` in the call's tenants (tenancy.h: where the role is
// looked for, by the action's scope); else the caller's own refusal (not an operator,
// revoked, unauthenticated, no tenant chosen) or PERMISSION_DENIED naming the role. An action of
// scope kSelf needs an operator identity only. FAILED_PRECONDITION for an action
// needsIncidentUnderPolicy() covers without `caller.incident` when `incident_required_by` says a
// tenant's policy requires one.
absl::Status authorize(const Caller& caller, OperatorAction action);

}  // namespace bulkhead::controller
