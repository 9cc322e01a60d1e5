// The text of a join token, as `bulkhead tokens create` prints it and `bulkhead-agent enroll
// --token` reads it: "bhjt1." and base64url (no padding) of a JSON object
//   {"id": "jt-…", "secret": 64 hex digits, "enroll": ["IP:PORT", …],
//    "name": the controller's certificate name, "ca_sha256": 64 hex digits}
// It carries everything a new server needs to reach the controller and trust it: where to
// enroll, the name to check and the pin of the fleet CA. Pure; the secret is the credential.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bulkhead {

struct JoinTokenText {
  std::string token_id;                       // "jt-" and 16 lower-case hex digits
  std::string secret;                         // 64 lower-case hex digits
  std::vector<std::string> enroll_addresses;  // "IP:PORT" / "[IPv6]:PORT", at least one
  std::string controller_name;                // a DNS name
  std::string ca_sha256;                      // 64 lower-case hex digits
};

inline constexpr std::string_view kJoinTokenPrefix = "bhjt1.";

std::string formatJoinToken(const JoinTokenText& token);

// INVALID_ARGUMENT "token: ..." naming what is wrong (not a bulkhead join token, a field
// missing or malformed). Surrounding white space is ignored.
absl::StatusOr<JoinTokenText> parseJoinToken(std::string_view text);

// Whether `text` is `n` lower-case hex digits.
bool isLowerHex(std::string_view text, size_t n);

}  // namespace bulkhead
