#include "common/join_token.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "common/format.h"
#include "common/identity.h"
#include "common/parse.h"

namespace bulkhead {
namespace {

absl::Status bad(std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("token: {}", what));
}

constexpr size_t kMaxTokenBytes = 4096;
constexpr size_t kMaxAddresses = 16;

}  // namespace

bool isLowerHex(std::string_view text, size_t n) {
  if (text.size() != n) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string formatJoinToken(const JoinTokenText& token) {
  const nlohmann::json doc = {{"id", token.token_id},
                              {"secret", token.secret},
                              {"enroll", token.enroll_addresses},
                              {"name", token.controller_name},
                              {"ca_sha256", token.ca_sha256}};
  std::string encoded;
  absl::WebSafeBase64Escape(doc.dump(), &encoded);
  return std::string(kJoinTokenPrefix) + encoded;
}

absl::StatusOr<JoinTokenText> parseJoinToken(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  if (text.size() > kMaxTokenBytes) return bad("too long to be a join token");
  if (!text.starts_with(kJoinTokenPrefix)) {
    return bad(
        "not a bulkhead join token (it starts with \"bhjt1.\"; copy the whole line "
        "`bulkhead tokens create` printed)");
  }
  text.remove_prefix(kJoinTokenPrefix.size());
  std::string decoded;
  if (!absl::WebSafeBase64Unescape(std::string(text), &decoded)) {
    return bad("damaged: not base64url after \"bhjt1.\" (was it cut or wrapped?)");
  }
  const nlohmann::json doc = nlohmann::json::parse(decoded, nullptr, false);
  if (!doc.is_object()) return bad("damaged: its content is not a JSON object");
  auto field = [&](const char* name) -> absl::StatusOr<std::string> {
    auto it = doc.find(name);
    if (it == doc.end() || !it->is_string()) {
      return bad(fmt::format("damaged: \"{}\" missing or not text", name));
    }
    return it->get<std::string>();
  };
  JoinTokenText out;
  for (auto [name, dest] :
       {std::pair{"id", &out.token_id}, std::pair{"secret", &out.secret},
        std::pair{"name", &out.controller_name}, std::pair{"ca_sha256", &out.ca_sha256}}) {
    auto v = field(name);
    if (!v.ok()) return v.status();
    *dest = *std::move(v);
  }
  if (!out.token_id.starts_with("jt-") || !isLowerHex(out.token_id.substr(3), 16)) {
    return bad("damaged: \"id\" is not a token id");
  }
  if (!isLowerHex(out.secret, 64)) return bad("damaged: \"secret\" is not 64 hex digits");
  if (!isLowerHex(out.ca_sha256, 64)) return bad("damaged: \"ca_sha256\" is not 64 hex digits");
  if (!isValidDnsName(out.controller_name)) return bad("damaged: \"name\" is not a DNS name");
  auto enroll = doc.find("enroll");
  if (enroll == doc.end() || !enroll->is_array() || enroll->empty() ||
      enroll->size() > kMaxAddresses) {
    return bad("damaged: \"enroll\" must list 1-16 addresses");
  }
  for (const auto& a : *enroll) {
    if (!a.is_string() || !parseHostPort("enroll", a.get<std::string>()).ok()) {
      return bad("damaged: \"enroll\" holds a value that is not HOST:PORT");
    }
    out.enroll_addresses.push_back(a.get<std::string>());
  }
  return out;
}

}  // namespace bulkhead
