#include "controller/service/audit.h"

#include <spdlog/spdlog.h>

#include "common/format.h"
#include "common/text.h"
#include "controller/service/tenancy.h"
#include "evidence/json_read.h"

namespace bulkhead::controller {

AuditActor auditActor(const Caller& caller) {
  const std::vector<std::string> tenants = callTenants(caller);
  return AuditActor{.name = caller.audit_name,
                    .tenant = tenants.size() == 1 ? tenants.front() : std::string(kEveryTenant),
                    .incident = caller.incident};
}

AuditActor auditActorOn(const Caller& caller, std::string_view host_tenant) {
  return AuditActor{.name = caller.audit_name,
                    .tenant = tenantOrDefault(host_tenant),
                    .incident = caller.incident};
}

std::string auditOutcome(const absl::Status& s) {
  if (s.ok()) return "ok";
  if (absl::IsPermissionDenied(s) || absl::IsUnauthenticated(s)) return "denied";
  return fmt::format("error: {}", s.message());
}

AuditEntry callEntry(int64_t at_unix_ms, const AuditActor& actor, const std::string& action,
                     const std::string& target, const std::string& reason,
                     const absl::Status& result, const std::string& detail) {
  AuditEntry e;
  e.at_unix_ms = at_unix_ms;
  e.operator_name = actor.name;
  e.tenant = actor.tenant;
  e.incident = actor.incident;
  e.action = action;
  e.target = evidence::boundedText(escapeNonPrintable(target), kMaxAuditTarget, false);
  e.reason = escapeNonPrintable(reason);
  e.outcome = evidence::boundedText(escapeNonPrintable(auditOutcome(result)), kMaxAuditText, false);
  e.detail = evidence::boundedText(escapeNonPrintable(detail), kMaxAuditText, false);
  if (e.detail.empty() && e.outcome == "denied") {
    e.detail = evidence::boundedText(escapeNonPrintable(std::string(result.message())),
                                     kMaxAuditText, false);
  }
  return e;
}

absl::Status recordCall(Store& store, const Clock& clock, const AuditActor& actor,
                        const std::string& action, const std::string& target,
                        const std::string& reason, const absl::Status& result,
                        const std::string& detail) {
  const AuditEntry e = callEntry(clock.nowUnixMs(), actor, action, target, reason, result, detail);
  auto row = store.appendAudit(e);
  if (!row.ok()) {
    spdlog::error("audit: cannot record {} by {}: {}", action, actor.name, row.status());
    return absl::InternalError(
        fmt::format("audit trail unavailable, call refused: {}", row.status()));
  }
  if (!result.ok()) {
    spdlog::info("operator {}: {} {} -> {}", actor.name, action, target, e.outcome);
  }
  return result;
}

absl::Status recordAccepted(Store& store, const Clock& clock, const AuditActor& actor,
                            const std::string& action, const std::string& target,
                            const std::string& reason, const std::string& detail) {
  AuditEntry e{.at_unix_ms = clock.nowUnixMs(),
               .operator_name = actor.name,
               .action = action,
               .target = target,
               .reason = reason,
               .outcome = "accepted",
               .detail = detail,
               .tenant = actor.tenant,
               .incident = actor.incident};
  if (auto row = store.appendAudit(e); !row.ok()) {
    spdlog::error("audit: cannot record {} {} by {} as accepted: {}", action, target, actor.name,
                  row.status());
    return absl::InternalError(
        fmt::format("audit trail unavailable, nothing sent to {}: {}", target, row.status()));
  }
  return absl::OkStatus();
}

}  // namespace bulkhead::controller
