#include "evidence/signing.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <memory>

#include "common/certificate.h"
#include "common/format.h"
#include "common/identity.h"
#include "evidence/hash.h"

namespace bulkhead::evidence {
namespace {

// A unique_ptr releasing T with OpenSSL's `Free`.
template <typename T, auto Free>
using Owned = std::unique_ptr<T, decltype([](T* p) { Free(p); })>;
using PKeyPtr = Owned<EVP_PKEY, EVP_PKEY_free>;
using X509Ptr = Owned<X509, X509_free>;
using BioPtr = Owned<BIO, BIO_free_all>;
using MdCtxPtr = Owned<EVP_MD_CTX, EVP_MD_CTX_free>;
using StorePtr = Owned<X509_STORE, X509_STORE_free>;
using StoreCtxPtr = Owned<X509_STORE_CTX, X509_STORE_CTX_free>;

// OpenSSL's most recent error as text (and the queue cleared), or `fallback`.
std::string sslError(std::string_view fallback) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return std::string(fallback);
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

BioPtr memBio(std::string_view pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

absl::StatusOr<X509Ptr> readCert(std::string_view pem, std::string_view what) {
  X509Ptr cert(PEM_read_bio_X509(memBio(pem).get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return absl::InvalidArgumentError(fmt::format("{}: not a PEM X.509 certificate", what));
  }
  return cert;
}

absl::StatusOr<PKeyPtr> readKey(std::string_view pem) {
  PKeyPtr key(PEM_read_bio_PrivateKey(memBio(pem).get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    return absl::InvalidArgumentError("signing key: not a PEM private key");
  }
  return key;
}

}  // namespace

absl::StatusOr<Signer> Signer::fromPem(std::string key_pem, std::string cert_pem) {
  auto key = readKey(key_pem);
  if (!key.ok()) return key.status();
  auto cert = readCert(cert_pem, "signing certificate");
  if (!cert.ok()) return cert.status();
  if (EVP_PKEY_eq(X509_get0_pubkey(cert->get()), key->get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "signing key: does not match the public key of the signing certificate");
  }
  return Signer(std::move(key_pem), std::move(cert_pem));
}

absl::StatusOr<std::string> Signer::sign(std::string_view data) const {
  auto key = readKey(key_pem_);
  if (!key.ok()) return key.status();
  MdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key->get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                     data.size()) != 1) {
    return absl::InternalError(fmt::format("signing: {}", sslError("EVP_DigestSign failed")));
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    return absl::InternalError(fmt::format("signing: {}", sslError("EVP_DigestSign failed")));
  }
  sig.resize(len);  // DER ECDSA signatures vary in length
  return sig;
}

absl::Status checkSignature(std::string_view cert_pem, std::string_view data,
                            std::string_view signature) {
  auto cert = readCert(cert_pem, "signer certificate");
  if (!cert.ok()) return cert.status();
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                                   X509_get0_pubkey(cert->get())) != 1) {
    return absl::InternalError(
        fmt::format("signature: {}", sslError("EVP_DigestVerifyInit failed")));
  }
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                            data.size());
  ERR_clear_error();
  if (rc != 1) {
    return absl::PermissionDeniedError(
        rc == 0 ? "signature: does not match the data and the signer certificate's key"
                : "signature: malformed or not made by the signer certificate's key type");
  }
  return absl::OkStatus();
}

namespace {

// `cert_pem` issued by `ca_pem` (expiry not checked), of `kind`, named `name` (empty: any).
absl::Status checkIssued(std::string_view cert_pem, std::string_view ca_pem, PeerKind kind,
                         std::string_view name) {
  auto cert = readCert(cert_pem, "signer certificate");
  if (!cert.ok()) return cert.status();
  auto ca = readCert(ca_pem, "CA certificate");
  if (!ca.ok()) return ca.status();
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca->get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr) != 1) {
    return absl::InternalError(
        fmt::format("signer certificate: {}", sslError("setting up the check failed")));
  }
  // Evidence outlives certificates: a bundle signed while the certificate was valid stays valid.
  X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_NO_CHECK_TIME);
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::PermissionDeniedError(fmt::format(
        "signer certificate: not issued by the fleet CA ({})", X509_verify_cert_error_string(err)));
  }
  auto id = identityFromCertPem(cert_pem);
  if (!id.ok()) return absl::PermissionDeniedError(fmt::format("signer {}", id.status()));
  if (id->kind != kind) {
    return absl::PermissionDeniedError(fmt::format(
        "signer certificate: a {} certificate, not {} (OU={})", peerKindName(id->kind),
        kind == PeerKind::kAgent ? "an agent's" : "the controller's", peerKindName(kind)));
  }
  if (!name.empty() && id->name != name) {
    return absl::PermissionDeniedError(
        fmt::format("signer certificate: issued to host \"{}\", not \"{}\"", id->name, name));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status checkSigner(std::string_view cert_pem, std::string_view ca_pem,
                         std::string_view host_id) {
  return checkIssued(cert_pem, ca_pem, PeerKind::kAgent, host_id);
}

absl::Status checkControllerSigner(std::string_view cert_pem, std::string_view ca_pem) {
  return checkIssued(cert_pem, ca_pem, PeerKind::kController, "");
}

}  // namespace bulkhead::evidence
