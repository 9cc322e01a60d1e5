#include "common/protocol_version.h"

#include <algorithm>
#include <charconv>

#include "common/format.h"

namespace bulkhead {

ProtocolVersion peerProtocol(bool present, uint32_t major, uint32_t minor) {
  if (!present) return ProtocolVersion{1, 0};
  return ProtocolVersion{major, minor};
}

std::string protocolText(ProtocolVersion v) { return fmt::format("{}.{}", v.major, v.minor); }

absl::Status parseProtocolVersion(std::string_view text, ProtocolVersion* out) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        fmt::format("protocol version \"{}\": expected MAJOR.MINOR, e.g. 1.1", text));
  };
  const size_t dot = text.find('.');
  if (dot == std::string_view::npos) return bad();
  const auto number = [](std::string_view part, uint32_t* v) {
    if (part.empty() || part.size() > 4) return false;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), *v);
    return ec == std::errc() && end == part.data() + part.size();
  };
  ProtocolVersion v;
  if (!number(text.substr(0, dot), &v.major) || !number(text.substr(dot + 1), &v.minor)) {
    return bad();
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status checkPeerProtocol(std::string_view self, std::string_view peer, ProtocolVersion theirs,
                               ProtocolVersion ours) {
  if (theirs.major == ours.major) return absl::OkStatus();
  return absl::FailedPreconditionError(fmt::format(
      "{} speaks protocol {}, {} speaks {}: major versions differ and neither understands the "
      "other; upgrade {} to a release speaking protocol {}.x",
      peer, protocolText(theirs), self, protocolText(ours), theirs.major < ours.major ? peer : self,
      std::max(theirs.major, ours.major)));
}

}  // namespace bulkhead
