// A small ECDSA P-256 certificate authority for bulkhead's mTLS identities.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/identity.h"

namespace bulkhead {

struct CertAndKey {
  std::string cert_pem;
  std::string key_pem;
};

struct CertRequest {
  PeerKind kind = PeerKind::kAgent;
  std::string name;                       // CN: host id, operator name or controller name
  Role role = Role::kViewer;              // operators only
  std::vector<std::string> dns_names;     // controller only: subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // controller only: subjectAltName IP entries
  std::chrono::hours validity{24 * 825};
};

// A self-signed CA certificate with a fresh P-256 key.
absl::StatusOr<CertAndKey> createCa(const std::string& name, std::chrono::hours validity);

// Issues a leaf certificate signed by `ca`. Controllers get serverAuth (and the name as a DNS
// SAN); agents and operators get clientAuth.
absl::StatusOr<CertAndKey> issueCert(const CertAndKey& ca, const CertRequest& request);

}  // namespace bulkhead
