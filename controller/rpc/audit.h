// Recording operator calls in the audit trail.
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

#include "controller/core/clock.h"
#include "controller/core/validate.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// The most a response the controller builds carries in its repeated parts (listings page
// beyond it), well below the 4 MiB a default gRPC client accepts.
inline constexpr size_t kMaxResponseBytes = 2 << 20;

// Bounds on the fields recordCall() writes (target, outcome, detail), clipped beyond them.
inline constexpr size_t kMaxAuditTarget = 1024;
inline constexpr size_t kMaxAuditText = 8192;

// "ok", "denied" (permission or authentication refusals) or "error: MESSAGE".
std::string auditOutcome(const grpc::Status& status);

// Appends the audit row of a call and returns the status to send: `result`, or INTERNAL when
// the row could not be written (a call is never answered unaudited). Non-printable characters
// in target, reason, outcome and detail are stored escaped (common/text.h), so neither a
// refused request nor an agent's text forges rows in a listing; target, outcome and detail
// are clipped (kMaxAuditTarget, kMaxAuditText).
grpc::Status recordCall(Store& store, const Clock& clock, const std::string& operator_name,
                        const std::string& action, const std::string& target,
                        const std::string& reason, const grpc::Status& result,
                        const std::string& detail = "");

inline grpc::Status toGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// `prior` when it is an error, else the check of every field of `request`
// (controller/core/validate.h).
template <typename Request>
grpc::Status validated(const grpc::Status& prior, const Request& request) {
  if (!prior.ok()) return prior;
  return toGrpcStatus(validateRequest(request));
}

}  // namespace bulkhead::controller
