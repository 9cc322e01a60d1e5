#include "evidence/report_manifest.h"

#include <fmt/format.h>

#include <charconv>
#include <utility>
#include <vector>

#include "common/lines.h"

namespace bulkhead::evidence {
namespace {

// Newlines would forge lines: a value never holds one (ids and names cannot; this is a guard).
std::string oneLine(std::string_view value) {
  std::string out(value);
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

bool isHex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string reportManifestText(const ReportManifest& m) {
  return fmt::format(
      "{}\nincident: {}\ntenant: {}\nformat: {}\nsize: {}\nsha256: {}\ngenerated: {}\n"
      "controller: {}\n",
      kReportManifestFirstLine, oneLine(m.incident), oneLine(m.tenant), oneLine(m.format), m.size,
      oneLine(m.sha256), oneLine(m.generated), oneLine(m.controller));
}

absl::StatusOr<ReportManifest> parseReportManifest(std::string_view text) {
  if (text.empty() || text.back() != '\n') {
    return absl::InvalidArgumentError("manifest: does not end with a newline");
  }
  const std::vector<std::string_view> lines = splitLines(text);
  if (lines.empty() || lines[0] != kReportManifestFirstLine) {
    return absl::InvalidArgumentError(
        fmt::format("manifest: the first line is not \"{}\"", kReportManifestFirstLine));
  }
  ReportManifest m;
  std::string size_text;
  const std::vector<std::pair<std::string_view, std::string*>> fields = {
      {"incident", &m.incident},    {"tenant", &m.tenant}, {"format", &m.format},
      {"size", &size_text},         {"sha256", &m.sha256}, {"generated", &m.generated},
      {"controller", &m.controller}};
  if (lines.size() != fields.size() + 1) {
    return absl::InvalidArgumentError(
        fmt::format("manifest: {} lines, expected {}", lines.size(), fields.size() + 1));
  }
  for (size_t i = 0; i < fields.size(); ++i) {
    const auto& [key, out] = fields[i];
    const std::string_view line = lines[i + 1];
    const std::string prefix = fmt::format("{}: ", key);
    if (!line.starts_with(prefix)) {
      return absl::InvalidArgumentError(
          fmt::format("manifest: line {} is not \"{}: ...\"", i + 2, key));
    }
    *out = std::string(line.substr(prefix.size()));
  }
  const char* end = size_text.data() + size_text.size();
  if (size_text.empty() || std::from_chars(size_text.data(), end, m.size).ptr != end) {
    return absl::InvalidArgumentError("manifest: size: not a whole number");
  }
  if (!isHex64(m.sha256)) {
    return absl::InvalidArgumentError("manifest: sha256: not 64 lower-case hex digits");
  }
  return m;
}

}  // namespace bulkhead::evidence
