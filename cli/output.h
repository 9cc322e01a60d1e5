// Output helpers: aligned tables for people, JSON documents for scripts.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/generated_enum_reflection.h>
#include <google/protobuf/message.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "bulkhead/v1/containment.pb.h"

namespace bulkhead::cli {

// Prints rows as left-aligned columns separated by two spaces; the first row is the header.
// Non-printable characters in cells are shown escaped (common/text.h): one row, one line.
void printTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows);

// Puts a TENANT column at position `at` of a table (header first), `tenants[i]` being row
// i + 1's tenant ("" reads "default"), when any row is outside "default": a single team never
// sees it.
void addTenantColumn(std::vector<std::vector<std::string>>& rows, size_t at,
                     const std::vector<std::string>& tenants);

// The `--json` contract (schemas in cli/schemas/, one per command). A protobuf message becomes
// an object with the proto field names; every field is present (a oneof's only when set, an
// unset message or proto3 `optional` field as null); 64-bit integers are JSON numbers; enum values
// are spelt as in the text output (enumText); bytes are base64; a string field NAME_json holding a
// JSON document appears parsed as NAME (null when it is not JSON).
nlohmann::json contractJson(const google::protobuf::Message& message);

// JSON Schema definitions (draft 2020-12 "$defs", keyed by full message name) of what
// contractJson prints for the roots and every message they contain.
// cli/schemas/messages.schema.json holds them; a test keeps it equal to this.
nlohmann::json contractSchemaDefs(const std::vector<const google::protobuf::Descriptor*>& roots);

// An enum value as people read it: lower case, the enum type's prefix dropped, '-' for '_'
// (PROTOCOL_TCP -> "tcp", DRY_RUN -> "dry-run", DIRECTION_BOTH -> "both").
std::string enumText(const google::protobuf::EnumValueDescriptor& value);
template <typename Enum>
std::string enumText(Enum value) {
  const auto* v = google::protobuf::GetEnumDescriptor<Enum>()->FindValueByNumber(value);
  return v != nullptr ? enumText(*v) : "unknown";
}

// Prints one JSON document (contractJson for a message), indented, non-UTF-8 bytes replaced.
// The elements of the message's top-level lists of messages are converted and written one at a
// time, so a response for 10,000 hosts never stands in memory as one JSON tree; the bytes are
// those of printJson(out, contractJson(message)).
void printJson(std::ostream& out, const google::protobuf::Message& message);
void printJson(std::ostream& out, const nlohmann::json& doc);

// "512 B", "12.3 KiB", "80.5 MiB", "1.2 GiB".
std::string humanBytes(uint64_t bytes);

// "3s ago", "5m ago", "2h ago", "never" relative to now_ms.
std::string ago(int64_t then_ms, int64_t now_ms);

// RFC 3339 UTC with milliseconds, "" for 0.
std::string utcTime(int64_t unix_ms);

// "10.77.0.5:22" or "[fd77::5]:22".
std::string endpoint(const std::string& ip, uint32_t port);

}  // namespace bulkhead::cli
