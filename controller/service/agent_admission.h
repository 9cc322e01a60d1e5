// Whether an agent's stream joins the fleet, decided on its Hello. The host id and serial come
// from the certificate TLS verified; every field of the Hello is the agent's claim. Pure: the
// revocation list is asked through the function passed in, nothing is logged or registered.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "bulkhead/v1/agent.pb.h"
#include "controller/core/registry.h"

namespace bulkhead::controller {

// What the stream's verified certificate says.
struct AgentCertificate {
  std::string host_id;  // its CN
  std::string serial;   // canonical hex, as PeerIdentity::serial
};

// True when the certificate with this serial is revoked. Must not block.
using RevocationCheck = std::function<bool(const std::string& serial)>;

// The Hello's facts (helloInfoFrom) when the stream is admitted; otherwise, checked in this
// order:
//   PERMISSION_DENIED    the certificate is revoked (`is_revoked`; none: nothing is revoked),
//                        or hello.host_id is set and differs from the certificate's host id;
//   INVALID_ARGUMENT     a field breaks helloInfoFrom's rules (naming the field and the value);
//   FAILED_PRECONDITION  the agent's protocol has another major version (checkPeerProtocol,
//                        saying which side to upgrade).
// The enforced generation is the agent's claim: the fleet bounds it by what it issued.
absl::StatusOr<HelloInfo> admitAgentHello(const AgentCertificate& certificate,
                                          const bulkhead::v1::Hello& hello,
                                          const RevocationCheck& is_revoked);

}  // namespace bulkhead::controller
