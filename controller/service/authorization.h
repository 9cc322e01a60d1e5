// Who may do what: one table of operator actions, each with the audit name its rows carry and
// the least role that may ask for it, and the one check every front door (the gRPC operator
// service, and any later webhook or tenant API) applies before any work.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "common/identity.h"

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
};

struct ActionRule {
  OperatorAction action;
  std::string_view name;  // the audit action
  Role min_role;          // the least role allowed to ask for it
};

// The table, one row per OperatorAction in declaration order.
std::span<const ActionRule> actionRules();
const ActionRule& ruleFor(OperatorAction action);
std::string_view actionName(OperatorAction action);
// The same as a string: the `action` of the audit rows this action writes.
std::string auditAction(OperatorAction action);

// The caller of one operator call, as the front door established it (for gRPC: the client
// certificate, checked against the CRL).
struct Caller {
  std::string audit_name;  // operator name, or "KIND:CN" for a non-operator, or "unauthenticated"
  bool is_operator = false;
  Role role = Role::kViewer;
  absl::Status refusal;  // non-OK: every call of this caller is refused with it
};

// OK when `caller` may ask for `action`; else the caller's own refusal (not an operator,
// revoked, unauthenticated) or PERMISSION_DENIED naming the role.
absl::Status authorize(const Caller& caller, OperatorAction action);

}  // namespace bulkhead::controller
