// rpc/translate.h: stored rows to the wire, the stored text kept and its reading beside it.
#include "controller/rpc/translate.h"

#include <gtest/gtest.h>

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

TEST(TranslateAudit, AStoredRowKeepsItsTextAndCarriesItsReading) {
  AuditEntry row{.id = 7,
                 .at_unix_ms = 1000,
                 .operator_name = "alice",
                 .action = "kill-process.result",
                 .target = "web-01",
                 .reason = "INC-42",
                 .outcome = "error: agent web-01 is offline",
                 .detail = "pid 42",
                 .prev_hash = std::string(64, '0'),
                 .hash = std::string(64, 'a'),
                 .mac = std::string(64, 'b')};
  const v1::AuditRecord r = toProto(row);
  EXPECT_EQ(r.action(), "kill-process.result");
  EXPECT_EQ(r.outcome(), "error: agent web-01 is offline");
  EXPECT_EQ(r.action_type(), v1::AUDIT_ACTION_KILL_PROCESS);
  EXPECT_EQ(r.phase(), v1::AUDIT_PHASE_RESULT);
  EXPECT_EQ(r.outcome_type(), v1::AUDIT_OUTCOME_ERROR);
  EXPECT_EQ(r.id(), 7);
  EXPECT_EQ(r.hash(), row.hash);

  row.action = "isolate";
  row.outcome = "accepted";
  const v1::AuditRecord call = toProto(row);
  EXPECT_EQ(call.action_type(), v1::AUDIT_ACTION_ISOLATE);
  EXPECT_EQ(call.phase(), v1::AUDIT_PHASE_CALL);
  EXPECT_EQ(call.outcome_type(), v1::AUDIT_OUTCOME_ACCEPTED);

  // A row this controller does not know (a newer one's): the text, no reading.
  row.action = "rotate-keys";
  row.outcome = "partial";
  const v1::AuditRecord newer = toProto(row);
  EXPECT_EQ(newer.action(), "rotate-keys");
  EXPECT_EQ(newer.outcome(), "partial");
  EXPECT_EQ(newer.action_type(), v1::AUDIT_ACTION_UNSPECIFIED);
  EXPECT_EQ(newer.phase(), v1::AUDIT_PHASE_UNSPECIFIED);
  EXPECT_EQ(newer.outcome_type(), v1::AUDIT_OUTCOME_UNSPECIFIED);
}

TEST(TranslateEvidence, CustodyEventsKeepTheirTextAndCarryTheirReading) {
  StoredEvidence e;
  e.row.id = std::string(64, 'c');
  for (const char* action :
       {"requested", "collected", "received", "get", "show", "verify", "archived"}) {
    e.custody.push_back(CustodyEntry{.evidence_id = e.row.id, .actor = "alice", .action = action});
  }
  const v1::EvidenceRecord r = toProto(e);
  ASSERT_EQ(r.custody_size(), 7);
  const v1::CustodyAction expected[] = {v1::CUSTODY_ACTION_REQUESTED,  v1::CUSTODY_ACTION_COLLECTED,
                                        v1::CUSTODY_ACTION_RECEIVED,   v1::CUSTODY_ACTION_GET,
                                        v1::CUSTODY_ACTION_SHOW,       v1::CUSTODY_ACTION_VERIFY,
                                        v1::CUSTODY_ACTION_UNSPECIFIED};
  for (int i = 0; i < r.custody_size(); ++i) {
    EXPECT_EQ(r.custody(i).action(), e.custody[static_cast<size_t>(i)].action);
    EXPECT_EQ(r.custody(i).action_type(), expected[i]) << r.custody(i).action();
  }
}

}  // namespace
}  // namespace bulkhead::controller
