#include "controller/rpc/audit.h"

#include <spdlog/spdlog.h>

#include "common/format.h"
#include "common/text.h"
#include "evidence/json_read.h"

namespace bulkhead::controller {

std::string auditOutcome(const grpc::Status& s) {
  if (s.ok()) return "ok";
  if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
      s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    return "denied";
  }
  return fmt::format("error: {}", s.error_message());
}

grpc::Status recordCall(Store& store, const Clock& clock, const std::string& operator_name,
                        const std::string& action, const std::string& target,
                        const std::string& reason, const grpc::Status& result,
                        const std::string& detail) {
  AuditEntry e;
  e.at_unix_ms = clock.nowUnixMs();
  e.operator_name = operator_name;
  e.action = action;
  e.target = evidence::boundedText(escapeNonPrintable(target), kMaxAuditTarget, false);
  e.reason = escapeNonPrintable(reason);
  e.outcome =
      evidence::boundedText(escapeNonPrintable(auditOutcome(result)), kMaxAuditText, false);
  e.detail = evidence::boundedText(escapeNonPrintable(detail), kMaxAuditText, false);
  if (e.detail.empty() && e.outcome == "denied") {
    e.detail =
        evidence::boundedText(escapeNonPrintable(result.error_message()), kMaxAuditText, false);
  }
  auto row = store.appendAudit(e);
  if (!row.ok()) {
    spdlog::error("audit: cannot record {} by {}: {}", action, operator_name, row.status());
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("audit trail unavailable, call refused: {}", row.status()));
  }
  if (!result.ok()) {
    spdlog::info("operator {}: {} {} -> {}", operator_name, action, target, e.outcome);
  }
  return result;
}

}  // namespace bulkhead::controller
