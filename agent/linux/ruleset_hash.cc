#include "agent/linux/ruleset_hash.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

namespace bulkhead::agent {

std::string rulesetHash(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // EVP_Digest fails only on allocation failure; a wrong hash would be worse than stopping.
  if (EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    std::fputs("bulkhead: EVP_Digest(SHA-256) failed\n", stderr);
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

}  // namespace bulkhead::agent
