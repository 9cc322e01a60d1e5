// The operator actions' table and the one authorize() check: no gRPC, no store.
#include "controller/service/authorization.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "common/format.h"

namespace bulkhead::controller {
namespace {

using A = OperatorAction;

Caller operatorWith(Role role) {
  return Caller{.audit_name = "alice", .is_operator = true, .role = role, .refusal = {}};
}

// The actions that change a host or collect or read its data, write an incident's record or
// send a message out (a test notification); everything else is a read.
const std::set<A> kMutating = {
    A::kIsolate,      A::kRelease,      A::kBlock,        A::kUnblock,       A::kKillConnections,
    A::kKillSessions, A::kKillProcess,  A::kCapture,      A::kGetEvidence,   A::kShowEvidence,
    A::kSubmitSignal, A::kOpenIncident, A::kNoteIncident, A::kCloseIncident, A::kTestNotify};
// Deciding an automatic action waiting for a person: approvers (and admins).
const std::set<A> kApproverOnly = {A::kApprove, A::kReject};
// Who may post signals to the controller, enroll hosts, and who may do what: admins only.
const std::set<A> kAdminOnly = {A::kCreateIntegration, A::kRevokeIntegration, A::kCreateJoinToken,
                                A::kListJoinTokens,    A::kRevokeJoinToken,   A::kCreateTenant,
                                A::kGrantAccess,       A::kRevokeAccess,      A::kSetHostLabels};

TEST(ActionRules, OneRowPerActionWithTheAuditNamesTheTrailHasAlwaysUsed) {
  const std::map<A, std::string> expected = {
      {A::kListHosts, "hosts"},
      {A::kGetHost, "status"},
      {A::kIsolate, "isolate"},
      {A::kRelease, "release"},
      {A::kListAudit, "audit"},
      {A::kVerifyAudit, "audit-verify"},
      {A::kExportAudit, "audit-export"},
      {A::kBlock, "block"},
      {A::kUnblock, "unblock"},
      {A::kListBlocks, "blocks"},
      {A::kKillConnections, "kill-connections"},
      {A::kListSessions, "sessions"},
      {A::kKillSessions, "kill-sessions"},
      {A::kKillProcess, "kill-process"},
      {A::kCapture, "capture"},
      {A::kListEvidence, "evidence-list"},
      {A::kGetEvidence, "evidence-get"},
      {A::kVerifyEvidence, "evidence-verify"},
      {A::kShowEvidence, "evidence-show"},
      {A::kSubmitSignal, "signal"},
      {A::kListSignals, "signals"},
      {A::kPreviewSignal, "signal-preview"},
      {A::kListApprovals, "approvals"},
      {A::kApprove, "approve"},
      {A::kReject, "reject"},
      {A::kListIntegrations, "integrations"},
      {A::kCreateIntegration, "integration-create"},
      {A::kRevokeIntegration, "integration-revoke"},
      {A::kCreateJoinToken, "token-create"},
      {A::kListJoinTokens, "tokens"},
      {A::kRevokeJoinToken, "token-revoke"},
      {A::kListTenants, "tenants"},
      {A::kCreateTenant, "tenant-create"},
      {A::kListAccess, "access"},
      {A::kGrantAccess, "access-grant"},
      {A::kRevokeAccess, "access-revoke"},
      {A::kSetHostLabels, "label"},
      {A::kRenewOperatorCertificate, "operator-renew"},
      {A::kOpenIncident, "incident-open"},
      {A::kListIncidents, "incidents"},
      {A::kShowIncident, "incident-show"},
      {A::kNoteIncident, "incident-note"},
      {A::kCloseIncident, "incident-close"},
      {A::kReportIncident, "incident-report"},
      {A::kListNotifyChannels, "notify-channels"},
      {A::kTestNotify, "notify-test"},
  };
  ASSERT_EQ(actionRules().size(), expected.size());
  std::set<std::string_view> names;
  for (const auto& rule : actionRules()) {
    EXPECT_EQ(rule.name, expected.at(rule.action));
    EXPECT_EQ(&ruleFor(rule.action), &rule);
    EXPECT_EQ(actionName(rule.action), rule.name);
    names.insert(rule.name);
  }
  EXPECT_EQ(names.size(), expected.size()) << "audit names must be distinct";
}

TEST(ActionRules, MutatingActionsNeedAResponderAndReadsAViewer) {
  for (const auto& rule : actionRules()) {
    if (rule.scope == ActionScope::kSelf) {
      EXPECT_EQ(rule.min_role, Role::kNone) << rule.name;  // the caller's own identity
      continue;
    }
    const Role want = kAdminOnly.contains(rule.action)      ? Role::kAdmin
                      : kApproverOnly.contains(rule.action) ? Role::kApprover
                      : kMutating.contains(rule.action)     ? Role::kResponder
                                                            : Role::kViewer;
    EXPECT_EQ(rule.min_role, want) << rule.name;
  }
}

TEST(Authorize, AViewerIsRefusedEveryMutatingActionAndAllowedEveryRead) {
  const Caller viewer = operatorWith(Role::kViewer);
  for (const auto& rule : actionRules()) {
    absl::Status s = authorize(viewer, rule.action);
    if (rule.scope == ActionScope::kInstall) {
      EXPECT_TRUE(absl::IsPermissionDenied(s)) << rule.name << ": " << s;
      EXPECT_EQ(s.message(), fmt::format("operator \"alice\": {} is for the install's admins "
                                         "(admin in tenant default on every host)",
                                         rule.name));
    } else if (kMutating.contains(rule.action) || kAdminOnly.contains(rule.action) ||
               kApproverOnly.contains(rule.action)) {
      EXPECT_TRUE(absl::IsPermissionDenied(s)) << rule.name << ": " << s;
      EXPECT_EQ(s.message(), "operator \"alice\" has role viewer: read only") << rule.name;
    } else {
      EXPECT_TRUE(s.ok()) << rule.name << ": " << s;
    }
  }
}

TEST(Authorize, RespondersMayDoEverythingButDecideApprovalsAndManageAndAdminsEverything) {
  for (const auto& rule : actionRules()) {
    absl::Status s = authorize(operatorWith(Role::kResponder), rule.action);
    if (rule.scope == ActionScope::kInstall) {
      EXPECT_TRUE(absl::IsPermissionDenied(s)) << rule.name;
    } else if (kAdminOnly.contains(rule.action) || kApproverOnly.contains(rule.action)) {
      EXPECT_TRUE(absl::IsPermissionDenied(s)) << rule.name;
      EXPECT_EQ(s.message(), fmt::format("operator \"alice\" has role responder: {} needs {}",
                                         rule.name, roleName(rule.min_role)));
    } else {
      EXPECT_TRUE(s.ok()) << "responder " << rule.name;
    }
    const absl::Status approver = authorize(operatorWith(Role::kApprover), rule.action);
    EXPECT_EQ(approver.ok(), !kAdminOnly.contains(rule.action)) << "approver " << rule.name;
    EXPECT_TRUE(authorize(operatorWith(Role::kAdmin), rule.action).ok()) << "admin " << rule.name;
  }
}

TEST(Authorize, ACertificateWithRoleNoneMayDoNothingOnItsOwn) {
  for (const auto& rule : actionRules()) {
    if (rule.scope == ActionScope::kSelf) {
      // Its own certificate's renewal: any operator, whatever tenant it could not choose.
      Caller unsure = operatorWith(Role::kNone);
      unsure.tenant_refusal = absl::FailedPreconditionError("has roles in tenants a, b");
      EXPECT_TRUE(authorize(unsure, rule.action).ok()) << rule.name;
      EXPECT_TRUE(absl::IsFailedPrecondition(authorize(unsure, A::kListHosts)));
      continue;
    }
    EXPECT_TRUE(absl::IsPermissionDenied(authorize(operatorWith(Role::kNone), rule.action)))
        << rule.name;
  }
}

TEST(Authorize, TheCallersOwnRefusalWinsWhateverTheRoleAndAction) {
  Caller revoked = operatorWith(Role::kAdmin);
  revoked.refusal = absl::PermissionDeniedError("the operator certificate of \"alice\" is revoked");
  Caller agent{.audit_name = "agent:web-01",
               .is_operator = false,
               .role = Role::kViewer,
               .refusal = absl::PermissionDeniedError("certificate OU=agent is not an operator")};
  for (const auto& rule : actionRules()) {
    EXPECT_EQ(authorize(revoked, rule.action), revoked.refusal) << rule.name;
    EXPECT_EQ(authorize(agent, rule.action), agent.refusal) << rule.name;
  }
}

TEST(Authorize, UnderRequireIncidentEveryContainmentActionNeedsAnIncidentAndNothingElseDoes) {
  const std::set<A> covered = {A::kIsolate,         A::kRelease,      A::kBlock,       A::kUnblock,
                               A::kKillConnections, A::kKillSessions, A::kKillProcess, A::kCapture};
  Caller bob = operatorWith(Role::kAdmin);
  bob.incident_required_by = "default";
  for (const auto& rule : actionRules()) {
    EXPECT_EQ(needsIncidentUnderPolicy(rule.action), covered.contains(rule.action)) << rule.name;
    const absl::Status s = authorize(bob, rule.action);
    if (!covered.contains(rule.action)) {
      EXPECT_TRUE(s.ok()) << rule.name << ": " << s;
      continue;
    }
    EXPECT_TRUE(absl::IsFailedPrecondition(s)) << rule.name << ": " << s;
    EXPECT_NE(s.message().find("--incident: required for " + std::string(rule.name) +
                               " in tenant default"),
              std::string_view::npos)
        << s;
  }
  // With an incident, or without the policy, they are allowed; the role check comes first.
  bob.incident = "INC-42";
  for (A a : covered) EXPECT_TRUE(authorize(bob, a).ok()) << actionName(a);
  Caller viewer = operatorWith(Role::kViewer);
  viewer.incident_required_by = "default";
  EXPECT_TRUE(absl::IsPermissionDenied(authorize(viewer, A::kIsolate)));
  EXPECT_TRUE(authorize(operatorWith(Role::kResponder), A::kIsolate).ok());
}

}  // namespace
}  // namespace bulkhead::controller
