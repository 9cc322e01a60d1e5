// Recording operator calls in the audit trail, in plain absl::Status terms: the one place a
// call's row is written, whichever front door took the call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "controller/core/clock.h"
#include "controller/service/authorization.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// The most a response the controller builds carries in its repeated parts (listings page
// beyond it), well below the 4 MiB a default gRPC client accepts.
inline constexpr size_t kMaxResponseBytes = 2 << 20;

// Bounds on the fields recordCall() writes (target, outcome, detail), clipped beyond them.
inline constexpr size_t kMaxAuditTarget = 1024;
inline constexpr size_t kMaxAuditText = 8192;

// Who a row is by (operator name, "KIND:CN" or "controller") and the tenant it belongs to.
struct AuditActor {
  std::string name;
  std::string tenant = kDefaultTenant;
  std::string incident;  // the incident the call is part of; "" for none
};

// The caller's audit name and the tenant of its call: the call's one tenant, or kEveryTenant
// ("*") when the call spans several (`--tenant '*'` by a caller with roles in more than one).
AuditActor auditActor(const Caller& caller);
// The actor of a call about one host the caller reaches, of tenant `host_tenant` ("" reads
// "default"): its rows go in the host's tenant, whatever the call named (a `--tenant '*'`
// status of acme's host is one of acme's rows).
AuditActor auditActorOn(const Caller& caller, std::string_view host_tenant);

// "ok", "denied" (permission or authentication refusals) or "error: MESSAGE".
std::string auditOutcome(const absl::Status& status);

// The row recordCall() writes for a call at `at_unix_ms`, for a caller that writes it in a
// transaction of its own (Store::addSignals): escaped and clipped the same way.
AuditEntry callEntry(int64_t at_unix_ms, const AuditActor& actor, const std::string& action,
                     const std::string& target, const std::string& reason,
                     const absl::Status& result, const std::string& detail = "");

// Appends the audit row of a call and returns the status to answer with: `result`, or
// INTERNAL when the row could not be written (a call is never answered unaudited).
// Non-printable characters in target, reason, outcome and detail are stored escaped
// (common/text.h), so neither a refused request nor an agent's text forges rows in a listing;
// target, outcome and detail are clipped (kMaxAuditTarget, kMaxAuditText).
absl::Status recordCall(Store& store, const Clock& clock, const AuditActor& actor,
                        const std::string& action, const std::string& target,
                        const std::string& reason, const absl::Status& result,
                        const std::string& detail = "");

// Records `action` on `target` as accepted (outcome "accepted", `detail` saying what is
// asked) before anything is sent to an agent; INTERNAL naming `target` when the row cannot be
// written (then nothing may be sent).
absl::Status recordAccepted(Store& store, const Clock& clock, const AuditActor& actor,
                            const std::string& action, const std::string& target,
                            const std::string& reason, const std::string& detail);

}  // namespace bulkhead::controller
