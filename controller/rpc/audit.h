// Recording operator calls in the audit trail.
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

#include "controller/core/clock.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// "ok", "denied" (permission or authentication refusals) or "error: MESSAGE".
std::string auditOutcome(const grpc::Status& status);

// Appends the audit row of a call and returns the status to send: `result`, or INTERNAL when
// the row could not be written (a call is never answered unaudited).
grpc::Status recordCall(Store& store, const Clock& clock, const std::string& operator_name,
                        const std::string& action, const std::string& target,
                        const std::string& reason, const grpc::Status& result,
                        const std::string& detail = "");

inline grpc::Status toGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace bulkhead::controller
