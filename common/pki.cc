#include "common/pki.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
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

X509Ptr newCert(EVP_PKEY* key, std::chrono::hours validity) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);  // tolerate small clock skew
  X509_gmtime_adj(X509_getm_notAfter(cert.get()),
                  static_cast<long>(std::chrono::seconds(validity).count()));
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

absl::StatusOr<CertAndKey> issueCert(const CertAndKey& ca, const CertRequest& request) {
  if (!isValidName(request.name)) {
    return absl::InvalidArgumentError(
        fmt::format("name: invalid value \"{}\": use 1-63 characters of [A-Za-z0-9._-], not "
                    "starting with '.' or '-'",
                    request.name));
  }
  X509Ptr ca_cert = readCert(ca.cert_pem);
  PKeyPtr ca_key = readKey(ca.key_pem);
  if (!ca_cert || !ca_key)
    return absl::InvalidArgumentError("pki: unreadable CA certificate or key");
  PKeyPtr key = newKey();
  if (!key) return sslError("generating a key");
  X509Ptr cert = newCert(key.get(), request.validity);
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
  return toPems(cert.get(), key.get());
}

}  // namespace bulkhead
