#include "cli/output.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include "common/text.h"

namespace bulkhead::cli {

void printTable(std::ostream& out, const std::vector<std::vector<std::string>>& raw_rows) {
  std::vector<std::vector<std::string>> rows;
  rows.reserve(raw_rows.size());
  for (const auto& raw : raw_rows) {
    auto& row = rows.emplace_back();
    for (const auto& cell : raw) row.push_back(escapeNonPrintable(cell));
  }
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

namespace {

bool encodeJson(const google::protobuf::Message& message, bool whitespace, std::string* json) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  opts.add_whitespace = whitespace;
  return google::protobuf::util::MessageToJsonString(message, json, opts).ok();
}

}  // namespace

nlohmann::json toJson(const google::protobuf::Message& message) {
  std::string text;
  if (!encodeJson(message, false, &text)) return nullptr;
  return nlohmann::json::parse(text, nullptr, false);
}

std::string humanBytes(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes) / 1024.0;
  for (const char* unit : {"KiB", "MiB", "GiB"}) {
    if (v < 1024.0 || std::string_view(unit) == "GiB") return fmt::format("{:.1f} {}", v, unit);
    v /= 1024.0;
  }
  return fmt::format("{} B", bytes);
}

void printJson(std::ostream& out, const google::protobuf::Message& message) {
  std::string json;
  if (!encodeJson(message, true, &json)) {
    out << "{\"error\": \"cannot encode the response as JSON\"}\n";
    return;
  }
  out << json;
  if (json.empty() || json.back() != '\n') out << "\n";
}

std::string ago(int64_t then_ms, int64_t now_ms) {
  if (then_ms <= 0) return "never";
  int64_t s = std::max<int64_t>(0, (now_ms - then_ms) / 1000);
  if (s < 120) return fmt::format("{}s ago", s);
  if (s < 7200) return fmt::format("{}m ago", s / 60);
  if (s < 172800) return fmt::format("{}h ago", s / 3600);
  return fmt::format("{}d ago", s / 86400);
}

std::string utcTime(int64_t unix_ms) {
  if (unix_ms <= 0) return "";
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, unix_ms % 1000);
}

std::string protoName(v1::Protocol protocol) {
  switch (protocol) {
    case v1::PROTOCOL_TCP: return "tcp";
    case v1::PROTOCOL_UDP: return "udp";
    case v1::PROTOCOL_ICMP: return "icmp";
    default: return "any";
  }
}

std::string endpoint(const std::string& ip, uint32_t port) {
  return ip.find(':') != std::string::npos ? fmt::format("[{}]:{}", ip, port)
                                           : fmt::format("{}:{}", ip, port);
}

}  // namespace bulkhead::cli
