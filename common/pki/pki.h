// A small ECDSA P-256 certificate authority for bulkhead's mTLS identities.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
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
  std::chrono::seconds validity{std::chrono::hours(24 * 825)};
};

// A certificate serial as typed by a person ("7a:3f:..", "0x7A3F", "7A3F") in the canonical
// form of PeerIdentity::serial. INVALID_ARGUMENT names the value when it is not hexadecimal.
absl::StatusOr<std::string> normalizeSerial(std::string_view text);

// A self-signed CA certificate with a fresh P-256 key.
absl::StatusOr<CertAndKey> createCa(const std::string& name, std::chrono::hours validity);

// Issues a leaf certificate signed by `ca`. Controllers get serverAuth (and the name as a DNS
// SAN); agents and operators get clientAuth.
absl::StatusOr<CertAndKey> issueCert(const CertAndKey& ca, const CertRequest& request);

// A fresh P-256 key and a certificate signing request for it (CN `name`), as made on a server
// that enrolls: the key stays there, the request goes to the controller.
struct KeyAndCsr {
  std::string key_pem;
  std::string csr_pem;
};
absl::StatusOr<KeyAndCsr> createKeyAndCsr(const std::string& name);
// A certificate signing request (CN `name`) for an existing key: a renewal keeps the key.
absl::StatusOr<std::string> createCsrForKey(std::string_view key_pem, const std::string& name);

// Issues the certificate of `request` for the public key of `csr_pem` (PKCS#10, PEM), signed
// by `ca`. The request's own signature must verify and its key be ECDSA P-256; its subject is
// ignored (`request` names the certificate). INVALID_ARGUMENT "csr: ..." otherwise.
absl::StatusOr<std::string> issueCertForCsr(const CertAndKey& ca, std::string_view csr_pem,
                                            const CertRequest& request);

// Lower-case hex SHA-256 of a PEM certificate's DER encoding: the CA pin of a join token
// (`openssl x509 -in ca.crt -outform DER | sha256sum`).
absl::StatusOr<std::string> certificateSha256(std::string_view pem);

// One revoked certificate, as a CRL entry.
struct RevokedCert {
  std::string serial;           // upper-case hex, as PeerIdentity::serial
  int64_t revoked_at_unix = 0;  // revocationDate
};

// A CRL (PEM, X.509 v2) listing `revoked`, signed by `ca`, valid from `now_unix` for
// `validity` (nextUpdate). Checkable with `openssl crl -CAfile ca.crt -in crl.pem`.
absl::StatusOr<std::string> createCrl(const CertAndKey& ca, const std::vector<RevokedCert>& revoked,
                                      int64_t now_unix, std::chrono::hours validity);

// The serials a CRL lists, after checking that it is signed by the CA in `ca_pem`. nextUpdate
// is not enforced: a stale list still denies what it names.
absl::StatusOr<std::set<std::string>> revokedSerials(const std::string& crl_pem,
                                                     const std::string& ca_pem);

// Checks an identity's files against each other: `key_pem` is the key of `cert_pem`, which is
// signed by the CA certificate `ca_pem` and has not expired. INVALID_ARGUMENT names the file
// (ca.crt, tls.crt, tls.key) and what is wrong.
absl::Status checkIdentityFiles(const std::string& ca_pem, const std::string& cert_pem,
                                const std::string& key_pem);

// The IP addresses in a PEM certificate's subjectAltName (as written by `pki init
// --controller-ip`), in certificate order, as IP literals ("10.0.0.5", "fd77::1"). A
// certificate without IP entries gives an empty list.
absl::StatusOr<std::vector<std::string>> certificateIpAddresses(std::string_view pem);

// A new controller certificate like `cert_pem` (the same name, DNS names and IP addresses, and
// as long) for the key `key_pem`, signed by `ca`: how a controller holding the CA key renews its
// own certificate. INVALID_ARGUMENT when `cert_pem` is not a controller certificate.
absl::StatusOr<std::string> reissueControllerCert(const CertAndKey& ca, std::string_view cert_pem,
                                                  std::string_view key_pem);

}  // namespace bulkhead
