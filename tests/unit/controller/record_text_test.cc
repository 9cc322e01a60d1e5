// The audit and custody text the controller stores, read as the v1 enums (record_text.h).
#include "controller/service/record_text.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "controller/playbook/engine.h"
#include "controller/playbook/playbook.h"
#include "controller/service/audit.h"
#include "controller/service/signal_intake.h"
#include "controller/store/store.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

TEST(AuditText, EveryActionTheControllerWritesReadsAsItsOwnValueInBothPhases) {
  std::set<v1::AuditAction> seen;
  const auto names = auditActionNames();
  ASSERT_EQ(names.size(), actionRules().size() + 17);
  for (const std::string& name : names) {
    const AuditReading call = readAuditText(name, "ok");
    EXPECT_NE(call.action, v1::AUDIT_ACTION_UNSPECIFIED) << name;
    EXPECT_EQ(call.phase, v1::AUDIT_PHASE_CALL) << name;
    const AuditReading result = readAuditText(name + ".result", "ok");
    EXPECT_EQ(result.action, call.action) << name;
    EXPECT_EQ(result.phase, v1::AUDIT_PHASE_RESULT) << name;
    EXPECT_TRUE(seen.insert(call.action).second) << name << ": a value two names share";
  }
  // And every value of the contract is a name the controller writes.
  const auto* values = v1::AuditAction_descriptor();
  EXPECT_EQ(seen.size() + 1, static_cast<size_t>(values->value_count()));
}

TEST(AuditText, TheControllersOwnRowsAndTheTableNamesReadAsNamed) {
  EXPECT_EQ(readAuditText("kill-connections", "accepted").action,
            v1::AUDIT_ACTION_KILL_CONNECTIONS);
  EXPECT_EQ(readAuditText("capture.result", "ok").action, v1::AUDIT_ACTION_CAPTURE);
  EXPECT_EQ(readAuditText("audit-verify", "ok").action, v1::AUDIT_ACTION_AUDIT_VERIFY);
  EXPECT_EQ(readAuditText(kEvidenceReceivedAction, "ok").action,
            v1::AUDIT_ACTION_EVIDENCE_RECEIVED);
  EXPECT_EQ(readAuditText(kControllerStartAction, "ok").action, v1::AUDIT_ACTION_CONTROLLER_START);
  EXPECT_EQ(readAuditText(kControllerStopAction, "ok").action, v1::AUDIT_ACTION_CONTROLLER_STOP);
  EXPECT_EQ(readAuditText(kControllerRestoreAction, "ok").action,
            v1::AUDIT_ACTION_CONTROLLER_RESTORE);
  EXPECT_EQ(readAuditText(kAuditKeyedAction, "ok").action, v1::AUDIT_ACTION_AUDIT_KEYED);
  EXPECT_EQ(readAuditText(kApprovalExpiredAuditAction, "ok").action,
            v1::AUDIT_ACTION_APPROVAL_EXPIRED);
}

TEST(AuditText, UnknownActionTextReadsUnspecifiedInActionAndPhase) {
  for (const char* text :
       {"", "Isolate", "ISOLATE", "isolate ", " isolate", "kill_connections", "kill--connections",
        "-isolate", "isolate-", "frobnicate", "frobnicate.result", ".result",
        "isolate.result.result", "isolate.Result", "unspecified", "audit_action_isolate"}) {
    const AuditReading r = readAuditText(text, "ok");
    EXPECT_EQ(r.action, v1::AUDIT_ACTION_UNSPECIFIED) << text;
    EXPECT_EQ(r.phase, v1::AUDIT_PHASE_UNSPECIFIED) << text;
    EXPECT_EQ(r.outcome, v1::AUDIT_OUTCOME_OK) << text;  // read on its own
  }
}

TEST(AuditText, EveryOutcomeTheControllerWritesReadsAsItsValue) {
  // What recordCall() stores (auditOutcome) and recordAccepted() stores ("accepted").
  EXPECT_EQ(readAuditText("isolate", auditOutcome(absl::OkStatus())).outcome, v1::AUDIT_OUTCOME_OK);
  EXPECT_EQ(readAuditText("isolate", auditOutcome(absl::PermissionDeniedError("viewer"))).outcome,
            v1::AUDIT_OUTCOME_DENIED);
  EXPECT_EQ(readAuditText("isolate", auditOutcome(absl::UnauthenticatedError("no cert"))).outcome,
            v1::AUDIT_OUTCOME_DENIED);
  EXPECT_EQ(readAuditText("isolate", auditOutcome(absl::InternalError("agent gone"))).outcome,
            v1::AUDIT_OUTCOME_ERROR);
  EXPECT_EQ(readAuditText("isolate", auditOutcome(absl::UnavailableError(""))).outcome,
            v1::AUDIT_OUTCOME_ERROR);
  EXPECT_EQ(readAuditText("isolate", "accepted").outcome, v1::AUDIT_OUTCOME_ACCEPTED);
  for (const char* text : {"", "OK", "ok ", "error", "error:x", "failed", "accepted: yes"}) {
    const AuditReading r = readAuditText("isolate", text);
    EXPECT_EQ(r.outcome, v1::AUDIT_OUTCOME_UNSPECIFIED) << text;
    EXPECT_EQ(r.action, v1::AUDIT_ACTION_ISOLATE) << text;  // read on its own
  }
}

TEST(CustodyText, EveryCustodyActionTheControllerRecordsReadsAsItsOwnValue) {
  std::set<v1::CustodyAction> seen;
  for (const std::string& name : custodyActionNames()) {
    const v1::CustodyAction a = readCustodyAction(name);
    EXPECT_NE(a, v1::CUSTODY_ACTION_UNSPECIFIED) << name;
    EXPECT_TRUE(seen.insert(a).second) << name;
  }
  EXPECT_EQ(seen.size() + 1, static_cast<size_t>(v1::CustodyAction_descriptor()->value_count()));
  EXPECT_EQ(readCustodyAction(kCustodyVerify), v1::CUSTODY_ACTION_VERIFY);
  for (const char* text : {"", "GET", "get ", "downloaded", "unspecified", "show.result"}) {
    EXPECT_EQ(readCustodyAction(text), v1::CUSTODY_ACTION_UNSPECIFIED) << text;
  }
}

TEST(SignalText, EveryPlaybookActionReadsAsItsOwnKind) {
  std::set<v1::SignalActionKind> seen;
  for (int k = 0; k <= static_cast<int>(ActionKind::kRelease); ++k) {
    const std::string_view name = actionKindName(static_cast<ActionKind>(k));
    const v1::SignalActionKind kind = readSignalActionKind(name);
    EXPECT_NE(kind, v1::SIGNAL_ACTION_KIND_UNSPECIFIED) << name;
    EXPECT_TRUE(seen.insert(kind).second) << name;
  }
  EXPECT_EQ(seen.size() + 1, static_cast<size_t>(v1::SignalActionKind_descriptor()->value_count()));
  EXPECT_EQ(readSignalActionKind("kill_connections"), v1::SIGNAL_ACTION_KIND_UNSPECIFIED);
  EXPECT_EQ(readSignalActionKind("quarantine"), v1::SIGNAL_ACTION_KIND_UNSPECIFIED);
}

TEST(SignalText, EveryVerdictReadsAsItsOwnState) {
  std::set<v1::SignalActionState> seen;
  for (Verdict v : {Verdict::kStart, Verdict::kSimulated, Verdict::kSuppressed,
                    Verdict::kNeedsApproval, Verdict::kSkipped}) {
    const v1::SignalActionState state = readSignalActionState(verdictName(v));
    EXPECT_NE(state, v1::SIGNAL_ACTION_STATE_UNSPECIFIED) << verdictName(v);
    EXPECT_TRUE(seen.insert(state).second) << verdictName(v);
  }
}

// The outcomes as the signal service writes them, an older controller's records included.
TEST(SignalText, OutcomeTextReadsAsItsState) {
  const std::vector<std::pair<std::string, v1::SignalActionState>> cases = {
      {"started", v1::SIGNAL_ACTION_STATE_STARTED},
      {"simulated", v1::SIGNAL_ACTION_STATE_SIMULATED},
      {"suppressed: max_hosts_per_action 5", v1::SIGNAL_ACTION_STATE_SUPPRESSED},
      {"awaiting approval apr-1-2: approval_for_isolate",
       v1::SIGNAL_ACTION_STATE_AWAITING_APPROVAL},
      {"skipped: no address", v1::SIGNAL_ACTION_STATE_SKIPPED},
      {"done", v1::SIGNAL_ACTION_STATE_DONE},
      {"done: 2 hosts isolated", v1::SIGNAL_ACTION_STATE_DONE},
      {"failed: UNAVAILABLE: h1 offline", v1::SIGNAL_ACTION_STATE_FAILED},
      {"not run", v1::SIGNAL_ACTION_STATE_NOT_RUN},
      {"approved by alice (apr-1): started", v1::SIGNAL_ACTION_STATE_STARTED},
      {"approved by alice (apr-1): done: blocked", v1::SIGNAL_ACTION_STATE_DONE},
      {"approved by alice (apr-1): failed: INTERNAL: x", v1::SIGNAL_ACTION_STATE_FAILED},
      {"rejected by bob (apr-1): not run", v1::SIGNAL_ACTION_STATE_NOT_RUN},
      {"expired (apr-1): rejected, not run", v1::SIGNAL_ACTION_STATE_NOT_RUN},
      {"", v1::SIGNAL_ACTION_STATE_UNSPECIFIED},
      {"quarantined", v1::SIGNAL_ACTION_STATE_UNSPECIFIED},
      {"approved by alice", v1::SIGNAL_ACTION_STATE_UNSPECIFIED},
      {"Done", v1::SIGNAL_ACTION_STATE_UNSPECIFIED},
  };
  for (const auto& [text, state] : cases) EXPECT_EQ(readSignalActionState(text), state) << text;
}

TEST(SignalText, OlderRecordsGetTheirTypesAndSetTypesAreKept) {
  v1::SignalRecord record;
  v1::SignalAction* old = record.add_actions();
  old->set_action("isolate");
  old->set_outcome("approved by alice (apr-1): done");
  v1::SignalAction* typed = record.add_actions();
  typed->set_action("block");
  typed->set_outcome("done");
  typed->set_kind(v1::SIGNAL_ACTION_KIND_BLOCK);
  typed->set_state(v1::SIGNAL_ACTION_STATE_FAILED);  // a newer writer's word stands
  fillTypedFields(record);
  EXPECT_EQ(record.actions(0).kind(), v1::SIGNAL_ACTION_KIND_ISOLATE);
  EXPECT_EQ(record.actions(0).state(), v1::SIGNAL_ACTION_STATE_DONE);
  EXPECT_EQ(record.actions(1).state(), v1::SIGNAL_ACTION_STATE_FAILED);

  v1::Approval pending;
  pending.mutable_action()->set_action("capture-then-isolate");
  pending.mutable_action()->set_outcome("awaiting approval apr-3: approval_for_isolate");
  fillTypedFields(pending);
  EXPECT_EQ(pending.action().kind(), v1::SIGNAL_ACTION_KIND_CAPTURE_THEN_ISOLATE);
  EXPECT_EQ(pending.action().state(), v1::SIGNAL_ACTION_STATE_AWAITING_APPROVAL);
  EXPECT_EQ(pending.outcome_state(), v1::SIGNAL_ACTION_STATE_UNSPECIFIED);  // no outcome yet
  v1::Approval expired = pending;
  expired.set_outcome("not run");
  fillTypedFields(expired);
  EXPECT_EQ(expired.outcome_state(), v1::SIGNAL_ACTION_STATE_NOT_RUN);

  v1::Integration integration;
  integration.set_format("generic");
  fillTypedFields(integration);
  EXPECT_EQ(integration.format_type(), v1::INTEGRATION_FORMAT_GENERIC);
}

}  // namespace
}  // namespace bulkhead::controller
