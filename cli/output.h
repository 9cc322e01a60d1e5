// Output helpers: aligned tables for people, JSON documents for scripts.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <google/protobuf/message.h>
#include <nlohmann/json.hpp>

#include "bulkhead/v1/containment.pb.h"

namespace bulkhead::cli {

// Prints rows as left-aligned columns separated by two spaces; the first row is the header.
// Non-printable characters in cells are shown escaped (common/text.h): one row, one line.
void printTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows);

// Prints a protobuf message as one JSON document (proto field names, defaults included).
void printJson(std::ostream& out, const google::protobuf::Message& message);

// A protobuf message as a JSON value (proto field names, defaults included), to embed in a
// larger document.
nlohmann::json toJson(const google::protobuf::Message& message);

// "512 B", "12.3 KiB", "80.5 MiB", "1.2 GiB".
std::string humanBytes(uint64_t bytes);

// "3s ago", "5m ago", "2h ago", "never" relative to now_ms.
std::string ago(int64_t then_ms, int64_t now_ms);

// RFC 3339 UTC with milliseconds, "" for 0.
std::string utcTime(int64_t unix_ms);

// "tcp", "udp", "icmp" or "any".
std::string protoName(v1::Protocol protocol);

// "10.77.0.5:22" or "[fd77::5]:22".
std::string endpoint(const std::string& ip, uint32_t port);

}  // namespace bulkhead::cli
