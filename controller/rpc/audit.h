// The RPC edge of auditing: grpc::Status in and out, over the service layer's plain
// absl::Status versions (controller/service/audit.h).
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "controller/core/clock.h"
#include "controller/service/audit.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

inline grpc::Status toGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}
inline absl::Status fromGrpcStatus(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// Finishes a unary call's `reactor` with `result`'s status, its value moved into `resp` when OK.
template <typename T>
grpc::ServerUnaryReactor* finishUnary(grpc::ServerUnaryReactor* reactor, absl::StatusOr<T> result,
                                      T* resp) {
  const absl::Status status = result.status();
  if (result.ok()) *resp = *std::move(result);
  reactor->Finish(toGrpcStatus(status));
  return reactor;
}

// recordCall() (controller/service/audit.h) for a gRPC status.
inline grpc::Status recordCall(Store& store, const Clock& clock, const AuditActor& actor,
                               const std::string& action, const std::string& target,
                               const std::string& reason, const grpc::Status& result,
                               const std::string& detail = "") {
  return toGrpcStatus(
      recordCall(store, clock, actor, action, target, reason, fromGrpcStatus(result), detail));
}

}  // namespace bulkhead::controller
