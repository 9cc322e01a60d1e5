// Reading a peer's identity from its certificate (OpenSSL).
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "common/identity.h"

namespace bulkhead {

// Reads the identity from a PEM certificate. The certificate chain must already have been
// verified (by TLS); this only reads the subject.
absl::StatusOr<PeerIdentity> identityFromCertPem(std::string_view pem);

}  // namespace bulkhead
