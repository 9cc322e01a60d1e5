#include "common/certificate.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <ctime>
#include <memory>

#include "absl/status/status.h"
#include "common/format.h"

namespace bulkhead {
namespace {

std::string subjectField(X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) return {};
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

std::string serialHex(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr);
  if (bn == nullptr) return {};
  char* hex = BN_bn2hex(bn);
  std::string out = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

int64_t unixTime(const ASN1_TIME* time) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(time, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace

absl::StatusOr<PeerIdentity> identityFromCertPem(std::string_view pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!cert) return absl::InvalidArgumentError("certificate: not a PEM X.509 certificate");
  X509_NAME* subject = X509_get_subject_name(cert.get());
  std::string org = subjectField(subject, NID_organizationName);
  std::string unit = subjectField(subject, NID_organizationalUnitName);
  std::string cn = subjectField(subject, NID_commonName);
  if (org != "bulkhead") {
    return absl::PermissionDeniedError("certificate: subject O is not \"bulkhead\"");
  }
  PeerIdentity id;
  if (unit == "agent")
    id.kind = PeerKind::kAgent;
  else if (unit == "operator")
    id.kind = PeerKind::kOperator;
  else if (unit == "controller")
    id.kind = PeerKind::kController;
  else
    return absl::PermissionDeniedError(fmt::format("certificate: unknown OU \"{}\"", unit));
  if (id.kind == PeerKind::kOperator ? !isValidOperatorName(cn) : !isValidName(cn)) {
    return absl::PermissionDeniedError(fmt::format("certificate: invalid CN \"{}\"", cn));
  }
  id.name = cn;
  id.serial = serialHex(cert.get());
  id.not_before_unix = unixTime(X509_get0_notBefore(cert.get()));
  id.not_after_unix = unixTime(X509_get0_notAfter(cert.get()));
  if (id.kind == PeerKind::kOperator) {
    auto role = parseRole(subjectField(subject, NID_title));
    if (!role.ok())
      return absl::PermissionDeniedError("certificate: operator without a valid role");
    id.role = *role;
  }
  return id;
}

}  // namespace bulkhead
