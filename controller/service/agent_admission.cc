#include "controller/service/agent_admission.h"

#include <utility>

#include "common/format.h"
#include "common/protocol_version.h"
#include "controller/core/hello.h"

namespace bulkhead::controller {

absl::StatusOr<HelloInfo> admitAgentHello(const AgentCertificate& certificate,
                                          const bulkhead::v1::Hello& hello,
                                          const RevocationCheck& is_revoked) {
  if (is_revoked && is_revoked(certificate.serial)) {
    return absl::PermissionDeniedError(
        fmt::format("the agent certificate of \"{}\" (serial {}) is revoked", certificate.host_id,
                    certificate.serial));
  }
  if (!hello.host_id().empty() && hello.host_id() != certificate.host_id) {
    return absl::PermissionDeniedError(
        fmt::format("hello.host_id \"{}\" does not match the certificate's host id \"{}\"",
                    hello.host_id(), certificate.host_id));
  }
  auto info = helloInfoFrom(hello);
  if (!info.ok()) return absl::InvalidArgumentError(info.status().message());
  const ProtocolVersion agent_protocol =
      peerProtocol(hello.has_protocol(), hello.protocol().major(), hello.protocol().minor());
  if (auto s = checkPeerProtocol(
          "this controller",
          fmt::format("agent {} (bulkhead {})", certificate.host_id,
                      hello.agent_version().empty() ? "of unknown version" : hello.agent_version()),
          agent_protocol);
      !s.ok()) {
    return absl::FailedPreconditionError(s.message());
  }
  return info;
}

}  // namespace bulkhead::controller
