// PLACEHOLDER (lead): replaced by the engineer who owns evidence/.
#include "evidence/signing.h"

namespace bulkhead::evidence {

absl::StatusOr<Signer> Signer::fromPem(std::string, std::string) {
  return absl::UnimplementedError("not built yet");
}
absl::StatusOr<std::string> Signer::sign(std::string_view) const {
  return absl::UnimplementedError("not built yet");
}
absl::Status checkSignature(std::string_view, std::string_view, std::string_view) {
  return absl::UnimplementedError("not built yet");
}
absl::Status checkSigner(std::string_view, std::string_view, std::string_view) {
  return absl::UnimplementedError("not built yet");
}
std::string sha256Hex(std::string_view) { return ""; }

}  // namespace bulkhead::evidence
