#include "controller/service/authorization.h"

#include <array>
#include <cstdlib>

#include "common/format.h"

namespace bulkhead::controller {

namespace {

using A = OperatorAction;

// Reads (records, hashes, listings) are open to viewers; whatever changes a host, or collects
// or reads host data (capture, evidence get and show), needs a responder.
constexpr std::array kRules = {
    ActionRule{A::kListHosts, "hosts", Role::kViewer},
    ActionRule{A::kGetHost, "status", Role::kViewer},
    ActionRule{A::kIsolate, "isolate", Role::kResponder},
    ActionRule{A::kRelease, "release", Role::kResponder},
    ActionRule{A::kListAudit, "audit", Role::kViewer},
    ActionRule{A::kVerifyAudit, "audit-verify", Role::kViewer},
    ActionRule{A::kExportAudit, "audit-export", Role::kViewer},
    ActionRule{A::kBlock, "block", Role::kResponder},
    ActionRule{A::kUnblock, "unblock", Role::kResponder},
    ActionRule{A::kListBlocks, "blocks", Role::kViewer},
    ActionRule{A::kKillConnections, "kill-connections", Role::kResponder},
    ActionRule{A::kListSessions, "sessions", Role::kViewer},
    ActionRule{A::kKillSessions, "kill-sessions", Role::kResponder},
    ActionRule{A::kKillProcess, "kill-process", Role::kResponder},
    ActionRule{A::kCapture, "capture", Role::kResponder},
    ActionRule{A::kListEvidence, "evidence-list", Role::kViewer},
    ActionRule{A::kGetEvidence, "evidence-get", Role::kResponder},
    ActionRule{A::kVerifyEvidence, "evidence-verify", Role::kViewer},
    ActionRule{A::kShowEvidence, "evidence-show", Role::kResponder},
    ActionRule{A::kSubmitSignal, "signal", Role::kResponder},
    ActionRule{A::kListSignals, "signals", Role::kViewer},
    ActionRule{A::kPreviewSignal, "signal-preview", Role::kViewer},
    ActionRule{A::kListApprovals, "approvals", Role::kViewer},
    ActionRule{A::kApprove, "approve", Role::kResponder},
    ActionRule{A::kReject, "reject", Role::kResponder},
    ActionRule{A::kListIntegrations, "integrations", Role::kViewer},
    ActionRule{A::kCreateIntegration, "integration-create", Role::kAdmin},
    ActionRule{A::kRevokeIntegration, "integration-revoke", Role::kAdmin},
    ActionRule{A::kCreateJoinToken, "token-create", Role::kAdmin},
    ActionRule{A::kListJoinTokens, "tokens", Role::kAdmin},
    ActionRule{A::kRevokeJoinToken, "token-revoke", Role::kAdmin},
};

constexpr bool inOrder() {
  for (size_t i = 0; i < kRules.size(); ++i) {
    if (static_cast<size_t>(kRules[i].action) != i) return false;
  }
  return true;
}
static_assert(inOrder(), "kRules: one row per OperatorAction, in declaration order");
static_assert(kRules.size() == static_cast<size_t>(A::kRevokeJoinToken) + 1,
              "kRules: a row for every OperatorAction");

}  // namespace

std::span<const ActionRule> actionRules() { return kRules; }

const ActionRule& ruleFor(OperatorAction action) {
  const auto i = static_cast<size_t>(action);
  if (i >= kRules.size()) std::abort();  // not an OperatorAction
  return kRules[i];
}

std::string_view actionName(OperatorAction action) { return ruleFor(action).name; }

absl::Status authorize(const Caller& caller, OperatorAction action) {
  if (!caller.refusal.ok()) return caller.refusal;
  const Role needed = ruleFor(action).min_role;
  if (caller.role >= needed) return absl::OkStatus();
  if (caller.role == Role::kViewer) {
    return absl::PermissionDeniedError(
        fmt::format("operator \"{}\" has role viewer: read only", caller.audit_name));
  }
  return absl::PermissionDeniedError(fmt::format("operator \"{}\" has role {}: {} needs {}",
                                                 caller.audit_name, roleName(caller.role),
                                                 actionName(action), roleName(needed)));
}

std::string auditAction(OperatorAction action) { return std::string(actionName(action)); }

}  // namespace bulkhead::controller
