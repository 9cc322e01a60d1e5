#include "common/pki/pki.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "common/certificate.h"
#include "common/format.h"

namespace bulkhead {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PKeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using CrlPtr = std::unique_ptr<X509_CRL, Deleter<X509_CRL, X509_CRL_free>>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME, ASN1_TIME_free>>;
using Asn1IntPtr = std::unique_ptr<ASN1_INTEGER, Deleter<ASN1_INTEGER, ASN1_INTEGER_free>>;

absl::Status sslError(std::string_view what) {
  return absl::InternalError(fmt::format("pki: {} failed", what));
}

PKeyPtr newKey() { return PKeyPtr(EVP_EC_gen("P-256")); }

std::string bioString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> keyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)) {
    return sslError("writing the key");
  }
  return bioString(bio.get());
}

absl::StatusOr<std::string> certPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(bio.get(), cert)) return sslError("writing the certificate");
  return bioString(bio.get());
}

absl::Status addExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return sslError(fmt::format("extension {}={}", OBJ_nid2sn(nid), value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? absl::OkStatus() : sslError("adding an extension");
}

X509Ptr newCert(EVP_PKEY* key, std::chrono::seconds validity) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  // Starts a little early to tolerate clock skew: an hour, or a quarter of a short validity (a
  // lab's two-minute certificates), so a certificate's span stays close to its validity.
  const long skew = std::min<long>(3600, static_cast<long>(validity.count()) / 4);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -skew);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(validity.count()));
  X509_set_pubkey(cert.get(), key);
  return cert;
}

void setSubject(X509* cert, const std::string& unit, const std::string& cn,
                const std::string& title) {
  X509_NAME* name = X509_get_subject_name(cert);
  auto add = [&](const char* field, const std::string& v) {
    X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(v.c_str()), -1, -1, 0);
  };
  add("O", "bulkhead");
  add("OU", unit);
  add("CN", cn);
  if (!title.empty()) add("title", title);
}

PKeyPtr readKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PKeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

X509Ptr readCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

absl::StatusOr<CertAndKey> toPems(X509* cert, EVP_PKEY* key) {
  auto c = certPem(cert);
  if (!c.ok()) return c.status();
  auto k = keyPem(key);
  if (!k.ok()) return k.status();
  return CertAndKey{*std::move(c), *std::move(k)};
}

}  // namespace

absl::StatusOr<CertAndKey> createCa(const std::string& name, std::chrono::hours validity) {
  PKeyPtr key = newKey();
  if (!key) return sslError("generating the CA key");
  X509Ptr cert = newCert(key.get(), validity);
  setSubject(cert.get(), "ca", name, "");
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                            std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                            std::pair{NID_subject_key_identifier, "hash"}}) {
    if (auto s = addExt(cert.get(), cert.get(), nid, value); !s.ok()) return s;
  }
  if (!X509_sign(cert.get(), key.get(), EVP_sha256())) return sslError("signing the CA");
  return toPems(cert.get(), key.get());
}

namespace {

// A leaf certificate for `request` with the public key of `key`, signed by `ca`.
absl::StatusOr<X509Ptr> signLeaf(const CertAndKey& ca, const CertRequest& request, EVP_PKEY* key) {
  const bool valid = request.kind == PeerKind::kOperator ? isValidOperatorName(request.name)
                                                         : isValidName(request.name);
  if (!valid) {
    return absl::InvalidArgumentError(
        fmt::format("name: invalid value \"{}\": use 1-63 characters of [A-Za-z0-9._-], not "
                    "starting with '.' or '-'",
                    request.name));
  }
  X509Ptr ca_cert = readCert(ca.cert_pem);
  PKeyPtr ca_key = readKey(ca.key_pem);
  if (!ca_cert || !ca_key)
    return absl::InvalidArgumentError("pki: unreadable CA certificate or key");
  X509Ptr cert = newCert(key, request.validity);
  setSubject(cert.get(), std::string(peerKindName(request.kind)), request.name,
             request.kind == PeerKind::kOperator ? std::string(roleName(request.role)) : "");
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  std::vector<std::pair<int, std::string>> exts = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature,keyAgreement"},
      {NID_authority_key_identifier, "keyid:always"},
  };
  if (request.kind == PeerKind::kController) {
    exts.emplace_back(NID_ext_key_usage, "serverAuth,clientAuth");
    std::vector<std::string> sans;
    sans.push_back(fmt::format("DNS:{}", request.name));
    for (const auto& d : request.dns_names) sans.push_back(fmt::format("DNS:{}", d));
    for (const auto& ip : request.ip_addresses) sans.push_back(fmt::format("IP:{}", ip));
    exts.emplace_back(NID_subject_alt_name, absl::StrJoin(sans, ","));
  } else {
    exts.emplace_back(NID_ext_key_usage, "clientAuth");
    // A URI SAN mirrors the subject for tools that read SPIFFE-style ids.
    exts.emplace_back(NID_subject_alt_name, fmt::format("URI:bulkhead://{}/{}",
                                                        peerKindName(request.kind), request.name));
  }
  for (const auto& [nid, value] : exts) {
    if (auto s = addExt(cert.get(), ca_cert.get(), nid, value); !s.ok()) return s;
  }
  if (!X509_sign(cert.get(), ca_key.get(), EVP_sha256())) return sslError("signing");
  return cert;
}

using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;

}  // namespace

absl::StatusOr<CertAndKey> issueCert(const CertAndKey& ca, const CertRequest& request) {
  PKeyPtr key = newKey();
  if (!key) return sslError("generating a key");
  auto cert = signLeaf(ca, request, key.get());
  if (!cert.ok()) return cert.status();
  return toPems(cert->get(), key.get());
}

namespace {

absl::StatusOr<std::string> csrFor(EVP_PKEY* key, const std::string& name) {
  ReqPtr req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509_REQ_set_pubkey(req.get(), key);
  if (!X509_REQ_sign(req.get(), key, EVP_sha256())) return sslError("signing the request");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509_REQ(bio.get(), req.get())) return sslError("writing the request");
  return bioString(bio.get());
}

}  // namespace

absl::StatusOr<KeyAndCsr> createKeyAndCsr(const std::string& name) {
  PKeyPtr key = newKey();
  if (!key) return sslError("generating a key");
  auto csr = csrFor(key.get(), name);
  if (!csr.ok()) return csr.status();
  auto key_pem = keyPem(key.get());
  if (!key_pem.ok()) return key_pem.status();
  return KeyAndCsr{.key_pem = *std::move(key_pem), .csr_pem = *std::move(csr)};
}

absl::StatusOr<std::string> createCsrForKey(std::string_view key_pem, const std::string& name) {
  PKeyPtr key = readKey(std::string(key_pem));
  if (!key) return absl::InvalidArgumentError("not a PEM private key");
  return csrFor(key.get(), name);
}

absl::StatusOr<std::string> issueCertForCsr(const CertAndKey& ca, std::string_view csr_pem,
                                            const CertRequest& request) {
  BioPtr bio(BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size())));
  ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return absl::InvalidArgumentError("csr: not a PEM certificate signing request");
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr) return absl::InvalidArgumentError("csr: no public key");
  if (X509_REQ_verify(req.get(), key) != 1) {
    return absl::InvalidArgumentError("csr: its signature does not verify with its own key");
  }
  char group[64] = {};
  size_t group_len = 0;
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
      !EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof group, &group_len) ||
      std::string_view(group) != "prime256v1") {
    return absl::InvalidArgumentError("csr: the key must be ECDSA P-256");
  }
  auto cert = signLeaf(ca, request, key);
  if (!cert.ok()) return cert.status();
  return certPem(cert->get());
}

absl::StatusOr<std::string> certificateSha256(std::string_view pem) {
  X509Ptr cert = readCert(std::string(pem));
  if (!cert) return absl::InvalidArgumentError("not a PEM certificate");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!X509_digest(cert.get(), EVP_sha256(), digest, &len)) return sslError("hashing");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

absl::StatusOr<std::string> normalizeSerial(std::string_view text) {
  std::string hex;
  bool all_hex = true;
  std::string_view rest = text;
  if (rest.size() > 2 && rest[0] == '0' && (rest[1] == 'x' || rest[1] == 'X')) {
    rest.remove_prefix(2);
  }
  for (char c : rest) {
    if (c == ':') continue;
    all_hex = all_hex && std::isxdigit(static_cast<unsigned char>(c)) != 0;
    hex.push_back(c);
  }
  BIGNUM* bn = nullptr;
  if (!all_hex || hex.empty() || hex.size() > 64 ||
      BN_hex2bn(&bn, hex.c_str()) != static_cast<int>(hex.size())) {
    BN_free(bn);
    return absl::InvalidArgumentError(
        fmt::format("serial: invalid value \"{}\": expected hexadecimal digits (as `openssl "
                    "x509 -serial` prints them)",
                    text));
  }
  char* out = BN_bn2hex(bn);
  std::string serial = out != nullptr ? out : "";
  OPENSSL_free(out);
  BN_free(bn);
  return serial;
}

absl::StatusOr<std::string> createCrl(const CertAndKey& ca, const std::vector<RevokedCert>& revoked,
                                      int64_t now_unix, std::chrono::hours validity) {
  X509Ptr ca_cert = readCert(ca.cert_pem);
  PKeyPtr ca_key = readKey(ca.key_pem);
  if (!ca_cert || !ca_key) {
    return absl::InvalidArgumentError("pki: unreadable CA certificate or key");
  }
  CrlPtr crl(X509_CRL_new());
  if (!crl || !X509_CRL_set_version(crl.get(), 1) ||
      !X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca_cert.get()))) {
    return sslError("creating the CRL");
  }
  Asn1TimePtr this_update(ASN1_TIME_set(nullptr, static_cast<time_t>(now_unix)));
  Asn1TimePtr next_update(ASN1_TIME_set(
      nullptr, static_cast<time_t>(now_unix + std::chrono::seconds(validity).count())));
  if (!this_update || !next_update || !X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) ||
      !X509_CRL_set1_nextUpdate(crl.get(), next_update.get())) {
    return sslError("setting the CRL dates");
  }
  for (const auto& entry : revoked) {
    auto canonical = normalizeSerial(entry.serial);
    if (!canonical.ok()) return canonical.status();
    BIGNUM* bn = nullptr;
    BN_hex2bn(&bn, canonical->c_str());
    Asn1IntPtr serial(BN_to_ASN1_INTEGER(bn, nullptr));
    BN_free(bn);
    Asn1TimePtr when(ASN1_TIME_set(nullptr, static_cast<time_t>(entry.revoked_at_unix)));
    X509_REVOKED* rev = X509_REVOKED_new();
    if (!serial || !when || rev == nullptr || !X509_REVOKED_set_serialNumber(rev, serial.get()) ||
        !X509_REVOKED_set_revocationDate(rev, when.get()) ||
        !X509_CRL_add0_revoked(crl.get(), rev)) {
      X509_REVOKED_free(rev);
      return sslError("adding a CRL entry");
    }
  }
  X509_CRL_sort(crl.get());
  if (!X509_CRL_sign(crl.get(), ca_key.get(), EVP_sha256())) return sslError("signing the CRL");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509_CRL(bio.get(), crl.get())) return sslError("writing the CRL");
  return bioString(bio.get());
}

absl::StatusOr<std::set<std::string>> revokedSerials(const std::string& crl_pem,
                                                     const std::string& ca_pem) {
  X509Ptr ca_cert = readCert(ca_pem);
  if (!ca_cert) return absl::InvalidArgumentError("crl: unreadable CA certificate");
  BioPtr bio(BIO_new_mem_buf(crl_pem.data(), static_cast<int>(crl_pem.size())));
  CrlPtr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  if (!crl) return absl::InvalidArgumentError("crl: not a PEM X.509 CRL");
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(ca_cert.get())) != 0) {
    return absl::InvalidArgumentError("crl: issued by another CA than the fleet CA");
  }
  EVP_PKEY* ca_key = X509_get0_pubkey(ca_cert.get());
  if (ca_key == nullptr || X509_CRL_verify(crl.get(), ca_key) != 1) {
    return absl::InvalidArgumentError("crl: signature does not verify against the fleet CA");
  }
  std::set<std::string> serials;
  STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; i < sk_X509_REVOKED_num(entries); ++i) {
    const X509_REVOKED* rev = sk_X509_REVOKED_value(entries, i);
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(rev), nullptr);
    if (bn == nullptr) return sslError("reading a CRL entry");
    char* hex = BN_bn2hex(bn);
    if (hex != nullptr) serials.insert(hex);
    OPENSSL_free(hex);
    BN_free(bn);
  }
  return serials;
}

namespace {

// The subjectAltName entries of `cert` of type `type` (GEN_DNS, GEN_IPADD) as text.
std::vector<std::string> altNames(X509* cert, int type) {
  std::unique_ptr<GENERAL_NAMES, decltype(&GENERAL_NAMES_free)> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)),
      &GENERAL_NAMES_free);
  std::vector<std::string> out;
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != type) continue;
    if (type == GEN_DNS) {
      const ASN1_IA5STRING* dns = name->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                       static_cast<size_t>(ASN1_STRING_length(dns)));
      continue;
    }
    const ASN1_OCTET_STRING* ip = name->d.iPAddress;
    const int len = ASN1_STRING_length(ip);
    if (len != 4 && len != 16) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text, sizeof text) !=
        nullptr) {
      out.emplace_back(text);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> certificateIpAddresses(std::string_view pem) {
  X509Ptr cert = readCert(std::string(pem));
  if (!cert) return absl::InvalidArgumentError("certificate: not a PEM X.509 certificate");
  return altNames(cert.get(), GEN_IPADD);
}

absl::StatusOr<std::string> reissueControllerCert(const CertAndKey& ca, std::string_view cert_pem,
                                                  std::string_view key_pem) {
  X509Ptr cert = readCert(std::string(cert_pem));
  if (!cert) return absl::InvalidArgumentError("certificate: not a PEM X.509 certificate");
  auto id = identityFromCertPem(cert_pem);
  if (!id.ok()) return id.status();
  if (id->kind != PeerKind::kController) {
    return absl::InvalidArgumentError("certificate: not a controller certificate");
  }
  // The span includes the early start newCert() gives: a quarter of a short validity, or an
  // hour.
  const int64_t span = id->not_after_unix - id->not_before_unix;
  constexpr int64_t kHour = 3600;
  const int64_t validity = span > 5 * kHour ? span - kHour : span * 4 / 5;
  if (validity <= 0) return absl::InvalidArgumentError("certificate: ends before it starts");
  CertRequest request{.kind = PeerKind::kController,
                      .name = id->name,
                      .ip_addresses = altNames(cert.get(), GEN_IPADD),
                      .validity = std::chrono::seconds(validity)};
  for (std::string& dns : altNames(cert.get(), GEN_DNS)) {
    if (dns != id->name) request.dns_names.push_back(std::move(dns));
  }
  auto csr = createCsrForKey(key_pem, id->name);
  if (!csr.ok()) return csr.status();
  return issueCertForCsr(ca, *csr, request);
}

absl::Status checkIdentityFiles(const std::string& ca_pem, const std::string& cert_pem,
                                const std::string& key_pem) {
  X509Ptr ca = readCert(ca_pem);
  if (!ca) return absl::InvalidArgumentError("ca.crt: not a PEM X.509 certificate");
  X509Ptr cert = readCert(cert_pem);
  if (!cert) return absl::InvalidArgumentError("tls.crt: not a PEM X.509 certificate");
  PKeyPtr key = readKey(key_pem);
  if (!key) return absl::InvalidArgumentError("tls.key: not a PEM private key");
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError("tls.key: not the key of the certificate in tls.crt");
  }
  EVP_PKEY* ca_key = X509_get0_pubkey(ca.get());
  if (ca_key == nullptr || X509_verify(cert.get(), ca_key) != 1) {
    return absl::InvalidArgumentError("tls.crt: not signed by the CA in ca.crt");
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
    return absl::InvalidArgumentError("tls.crt: the certificate has expired");
  }
  return absl::OkStatus();
}

}  // namespace bulkhead
