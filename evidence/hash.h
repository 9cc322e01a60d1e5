// Streaming SHA-256 (OpenSSL EVP) for the evidence bundle: members and whole files are hashed
// while they are written or read, never re-read.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

namespace bulkhead::evidence {

class Sha256 {
 public:
  Sha256();
  // Feeds `data`; may be called any number of times before hexDigest().
  void update(const void* data, size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  // Lower-case hex of the digest of everything fed so far; the hasher is then reset and can be
  // reused for a new stream.
  std::string hexDigest();

 private:
  struct Free {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

// Lower-case hex SHA-256 of `data`.
std::string sha256Hex(std::string_view data);

// Lower-case hex HMAC-SHA256 of `data` under `key`.
std::string hmacSha256Hex(std::string_view key, std::string_view data);

// Lower-case hex of `size` bytes.
std::string toHex(const unsigned char* bytes, size_t size);

}  // namespace bulkhead::evidence
