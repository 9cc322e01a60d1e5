// Enrolling with a join token (proto/bulkhead/v1/enrollment.proto), as `bulkhead-agent enroll`
// does on a new server and `bulkhead enroll` on an operator's machine. Two calls per enrollment
// address, tried in the token's order:
//   1. GetCaCertificate over TLS that checks nothing, since the server has no CA yet; the
//      answer is trusted only if its SHA-256 is the token's pin;
//   2. Enroll over TLS verified with that CA and the token's controller name, so the token's
//      secret and the request go only to the real controller.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "bulkhead/v1/enrollment.pb.h"
#include "common/join_token.h"

namespace bulkhead {

// The controller's answer, or the first refusal (a refusal is final: the next address is
// tried only when one is unreachable). Each error is one line naming the address.
absl::StatusOr<bulkhead::v1::EnrollResponse> enrollWithToken(const JoinTokenText& token,
                                                             const std::string& host_id,
                                                             const std::string& csr_pem,
                                                             std::chrono::milliseconds timeout);

}  // namespace bulkhead
