// The audit and custody text the controller stores, read as the v1 enums (record_text.h).
#include "controller/service/record_text.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "controller/service/audit.h"
#include "controller/service/signal_intake.h"
#include "controller/store/store.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

TEST(AuditText, EveryActionTheControllerWritesReadsAsItsOwnValueInBothPhases) {
  std::set<v1::AuditAction> seen;
  const auto names = auditActionNames();
  ASSERT_EQ(names.size(), actionRules().size() + 9);
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

}  // namespace
}  // namespace bulkhead::controller
