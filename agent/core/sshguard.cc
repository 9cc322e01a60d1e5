#include "agent/core/sshguard.h"

#include <sys/socket.h>

#include <charconv>
#include <vector>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/parse.h"

namespace bulkhead::agent {
namespace {

absl::Status invalid(std::string_view line, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("sshguard line \"{}\": {}", line, why));
}

}  // namespace

absl::StatusOr<SshguardCommand> parseSshguardLine(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ' ||
                           line.back() == '\t')) {
    line.remove_suffix(1);
  }
  std::vector<std::string_view> words;
  for (size_t pos = 0; pos < line.size();) {
    size_t end = line.find_first_of(" \t", pos);
    if (end == std::string_view::npos) end = line.size();
    if (end > pos) words.push_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
  if (words.empty()) return invalid(line, "empty");
  SshguardCommand c;
  if (words[0] == "flush") {
    if (words.size() != 1) return invalid(line, "flush takes no arguments");
    c.kind = SshguardCommand::Kind::kFlush;
    return c;
  }
  if (words[0] == "block") {
    c.kind = SshguardCommand::Kind::kBlock;
  } else if (words[0] == "release") {
    c.kind = SshguardCommand::Kind::kRelease;
  } else {
    return invalid(
        line, fmt::format("unknown command \"{}\" (expected block, release or flush)", words[0]));
  }
  if (words.size() != 4) return invalid(line, "expected COMMAND ADDR TYPE PREFIX");
  auto addr = parseCidr("address", words[1]);
  if (!addr.ok()) return invalid(line, fmt::format("\"{}\" is not an IP address", words[1]));
  if (words[1].find('/') != std::string_view::npos) {
    return invalid(line, "the address must not carry a prefix");
  }
  int family = 0;
  if (words[2] == "4") {
    family = AF_INET;
  } else if (words[2] == "6") {
    family = AF_INET6;
  } else {
    return invalid(line, fmt::format("type \"{}\" (expected 4 or 6)", words[2]));
  }
  if (addr->family != family) {
    return invalid(line, fmt::format("{} is not an IPv{} address", words[1], words[2]));
  }
  int max_len = family == AF_INET ? 32 : 128;
  int prefix = -1;
  auto [end, ec] = std::from_chars(words[3].data(), words[3].data() + words[3].size(), prefix);
  if (ec != std::errc() || end != words[3].data() + words[3].size() || prefix < 1 ||
      prefix > max_len) {
    return invalid(line, fmt::format("prefix length \"{}\" (expected 1 to {})", words[3], max_len));
  }
  Cidr net = *addr;
  net.prefix_len = prefix;
  for (int bit = prefix; bit < max_len; ++bit) {
    net.addr[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  c.cidr = net.toString();
  return c;
}

}  // namespace bulkhead::agent
