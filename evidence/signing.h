// Signing and checking evidence manifests with the agent's mTLS key (ECDSA P-256, SHA-256,
// DER signature), and checking the signer's certificate against the fleet CA. Stock tools can
// check the same signature:
//   openssl x509 -in agent.crt -pubkey -noout > agent.pub
//   openssl dgst -sha256 -verify agent.pub -signature manifest.sig manifest.json
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "evidence/hash.h"   // sha256Hex, used with signatures

namespace bulkhead::evidence {

class Signer {
 public:
  // The agent's key and certificate (PEM). Fails if the key does not match the certificate.
  static absl::StatusOr<Signer> fromPem(std::string key_pem, std::string cert_pem);
  // DER-encoded ECDSA signature over SHA-256(data).
  absl::StatusOr<std::string> sign(std::string_view data) const;
  const std::string& certPem() const { return cert_pem_; }

 private:
  Signer(std::string key_pem, std::string cert_pem)
      : key_pem_(std::move(key_pem)), cert_pem_(std::move(cert_pem)) {}
  std::string key_pem_;
  std::string cert_pem_;
};

// OK if `signature` is a valid signature of `data` by the certificate's key.
absl::Status checkSignature(std::string_view cert_pem, std::string_view data,
                            std::string_view signature);

// OK if `cert_pem` was issued by `ca_pem`, is an agent certificate (OU=agent) and its CN is
// `host_id` (empty `host_id`: any agent). Expiry is not checked: evidence outlives certificates.
absl::Status checkSigner(std::string_view cert_pem, std::string_view ca_pem,
                         std::string_view host_id);
// OK if `cert_pem` was issued by `ca_pem` and is a controller certificate (OU=controller), as
// an audit export's or an incident report's signer must be. Expiry is not checked either.
absl::Status checkControllerSigner(std::string_view cert_pem, std::string_view ca_pem);

}  // namespace bulkhead::evidence
