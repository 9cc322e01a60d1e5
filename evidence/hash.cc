#include "evidence/hash.h"

#include <openssl/hmac.h>

#include <cstdio>
#include <cstdlib>

namespace bulkhead::evidence {
namespace {

// EVP fails only on allocation failure; a wrong hash in evidence would be worse than stopping.
void check(int ok, const char* what) {
  if (ok == 1) return;
  std::fprintf(stderr, "bulkhead: %s (SHA-256) failed\n", what);
  std::abort();
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_) check(0, "EVP_MD_CTX_new");
  check(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}

void Sha256::update(const void* data, size_t size) {
  if (size == 0) return;
  check(EVP_DigestUpdate(ctx_.get(), data, size), "EVP_DigestUpdate");
}

std::string Sha256::hexDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  check(EVP_DigestFinal_ex(ctx_.get(), md, &len), "EVP_DigestFinal_ex");
  check(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
  return toHex(md, len);
}

std::string toHex(const unsigned char* bytes, size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * size);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 0xf]);
  }
  return out;
}

std::string sha256Hex(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.hexDigest();
}

std::string hmacSha256Hex(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len) == nullptr) {
    check(0, "HMAC");
  }
  return toHex(md, len);
}

}  // namespace bulkhead::evidence
