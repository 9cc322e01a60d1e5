#include "cli/output.h"

#include <absl/strings/escaping.h>
#include <fmt/format.h>
#include <google/protobuf/descriptor.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>

#include "common/identity.h"
#include "common/json.h"
#include "common/text.h"

namespace bulkhead::cli {

void addTenantColumn(std::vector<std::vector<std::string>>& rows, size_t at,
                     const std::vector<std::string>& tenants) {
  const bool others = std::any_of(tenants.begin(), tenants.end(), [](const std::string& t) {
    return !t.empty() && t != kDefaultTenant;
  });
  if (!others) return;
  for (size_t i = 0; i < rows.size(); ++i) {
    auto& row = rows[i];
    const std::string cell = i == 0 ? "TENANT" : tenantOrDefault(tenants.at(i - 1));
    row.insert(row.begin() + static_cast<std::ptrdiff_t>(std::min(at, row.size())), cell);
  }
}

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

namespace pb = google::protobuf;

// "PROTOCOL" for Protocol, "HOST_STATE" for HostState: the prefix enum values carry.
std::string upperSnake(std::string_view camel) {
  std::string out;
  for (size_t i = 0; i < camel.size(); ++i) {
    const char c = camel[i];
    if (i > 0 && std::isupper(static_cast<unsigned char>(c)) != 0) out += '_';
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

nlohmann::json scalarJson(const pb::Message& m, const pb::Reflection& r,
                          const pb::FieldDescriptor& f, int index) {
  const bool rep = f.is_repeated();
  using F = pb::FieldDescriptor;
  switch (f.cpp_type()) {
    case F::CPPTYPE_INT32: return rep ? r.GetRepeatedInt32(m, &f, index) : r.GetInt32(m, &f);
    case F::CPPTYPE_INT64: return rep ? r.GetRepeatedInt64(m, &f, index) : r.GetInt64(m, &f);
    case F::CPPTYPE_UINT32: return rep ? r.GetRepeatedUInt32(m, &f, index) : r.GetUInt32(m, &f);
    case F::CPPTYPE_UINT64: return rep ? r.GetRepeatedUInt64(m, &f, index) : r.GetUInt64(m, &f);
    case F::CPPTYPE_DOUBLE: return rep ? r.GetRepeatedDouble(m, &f, index) : r.GetDouble(m, &f);
    case F::CPPTYPE_FLOAT: return rep ? r.GetRepeatedFloat(m, &f, index) : r.GetFloat(m, &f);
    case F::CPPTYPE_BOOL: return rep ? r.GetRepeatedBool(m, &f, index) : r.GetBool(m, &f);
    case F::CPPTYPE_ENUM:
      return enumText(*(rep ? r.GetRepeatedEnum(m, &f, index) : r.GetEnum(m, &f)));
    case F::CPPTYPE_STRING: {
      std::string value = rep ? r.GetRepeatedString(m, &f, index) : r.GetString(m, &f);
      if (f.type() == F::TYPE_BYTES) {
        std::string b64;
        absl::Base64Escape(value, &b64);
        return b64;
      }
      return value;
    }
    case F::CPPTYPE_MESSAGE:
      return contractJson(rep ? r.GetRepeatedMessage(m, &f, index) : r.GetMessage(m, &f));
  }
  return nullptr;
}

constexpr std::string_view kJsonSuffix = "_json";

bool isEmbeddedJson(const pb::FieldDescriptor& f) {
  const std::string& name = f.name();
  return f.type() == pb::FieldDescriptor::TYPE_STRING && name.size() > kJsonSuffix.size() &&
         name.compare(name.size() - kJsonSuffix.size(), kJsonSuffix.size(), kJsonSuffix) == 0;
}

}  // namespace

std::string enumText(const pb::EnumValueDescriptor& value) {
  std::string name = value.name();
  const std::string prefix = upperSnake(value.type()->name()) + "_";
  if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0) {
    name.erase(0, prefix.size());
  }
  for (char& c : name)
    c = c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

namespace {

// One field of contractJson's object: false when it has no key there (an unset oneof member);
// else its key in *name and its value in *value.
bool fieldJson(const pb::Message& message, const pb::Reflection& r, const pb::FieldDescriptor& f,
               std::string* name, nlohmann::json* value) {
  if (f.real_containing_oneof() != nullptr && !r.HasField(message, &f)) return false;
  *name = f.name();
  if (f.is_map()) {
    nlohmann::json map = nlohmann::json::object();
    const pb::FieldDescriptor& key = *f.message_type()->map_key();
    const pb::FieldDescriptor& val = *f.message_type()->map_value();
    for (int k = 0; k < r.FieldSize(message, &f); ++k) {
      const pb::Message& entry = r.GetRepeatedMessage(message, &f, k);
      const pb::Reflection& er = *entry.GetReflection();
      nlohmann::json key_json = scalarJson(entry, er, key, -1);
      map[key_json.is_string() ? key_json.get<std::string>() : key_json.dump()] =
          scalarJson(entry, er, val, -1);
    }
    *value = std::move(map);
  } else if (f.is_repeated()) {
    nlohmann::json items = nlohmann::json::array();
    for (int k = 0; k < r.FieldSize(message, &f); ++k)
      items.push_back(scalarJson(message, r, f, k));
    *value = std::move(items);
  } else if (f.has_presence() && !r.HasField(message, &f)) {
    *value = nullptr;  // an unset message or proto3 `optional` field
  } else if (isEmbeddedJson(f)) {
    name->resize(name->size() - kJsonSuffix.size());
    *value = parseForeignJson(r.GetString(message, &f)).value_or(nlohmann::json(nullptr));
  } else {
    *value = scalarJson(message, r, f, -1);
  }
  return true;
}

// `text` (dumped with an indent of 2) as it stands `depth` spaces further in: its line breaks
// are all structural, since a dumped string escapes its own.
std::string indented(std::string text, size_t depth) {
  const std::string pad(depth, ' ');
  for (size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n', at + 1)) {
    text.insert(at + 1, pad);
  }
  return text;
}

}  // namespace

nlohmann::json contractJson(const pb::Message& message) {
  const pb::Descriptor& d = *message.GetDescriptor();
  const pb::Reflection& r = *message.GetReflection();
  nlohmann::json out = nlohmann::json::object();
  std::string name;
  nlohmann::json value;
  for (int i = 0; i < d.field_count(); ++i) {
    if (fieldJson(message, r, *d.field(i), &name, &value)) out[name] = std::move(value);
  }
  return out;
}

namespace {

nlohmann::json valueSchema(const pb::FieldDescriptor& f, std::vector<const pb::Descriptor*>& todo) {
  using F = pb::FieldDescriptor;
  switch (f.cpp_type()) {
    case F::CPPTYPE_INT32:
    case F::CPPTYPE_INT64: return {{"type", "integer"}};
    case F::CPPTYPE_UINT32:
    case F::CPPTYPE_UINT64: return {{"type", "integer"}, {"minimum", 0}};
    case F::CPPTYPE_DOUBLE:
    case F::CPPTYPE_FLOAT: return {{"type", "number"}};
    case F::CPPTYPE_BOOL: return {{"type", "boolean"}};
    case F::CPPTYPE_ENUM: {
      nlohmann::json values = nlohmann::json::array();
      for (int i = 0; i < f.enum_type()->value_count(); ++i) {
        values.push_back(enumText(*f.enum_type()->value(i)));
      }
      values.push_back("unknown");
      return {{"enum", values}};
    }
    case F::CPPTYPE_STRING:
      if (f.type() == F::TYPE_BYTES) return {{"type", "string"}, {"contentEncoding", "base64"}};
      return {{"type", "string"}};
    case F::CPPTYPE_MESSAGE:
      todo.push_back(f.message_type());
      return {{"$ref", "#/$defs/" + f.message_type()->full_name()}};
  }
  return nlohmann::json::object();
}

}  // namespace

nlohmann::json contractSchemaDefs(const std::vector<const pb::Descriptor*>& roots) {
  nlohmann::json defs = nlohmann::json::object();
  std::vector<const pb::Descriptor*> todo(roots.begin(), roots.end());
  while (!todo.empty()) {
    const pb::Descriptor* d = todo.back();
    todo.pop_back();
    if (defs.contains(d->full_name())) continue;
    nlohmann::json properties = nlohmann::json::object();
    nlohmann::json required = nlohmann::json::array();
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor& f = *d->field(i);
      std::string name = f.name();
      nlohmann::json schema;
      if (f.is_map()) {
        schema = {{"type", "object"},
                  {"additionalProperties", valueSchema(*f.message_type()->map_value(), todo)}};
      } else if (f.is_repeated()) {
        schema = {{"type", "array"}, {"items", valueSchema(f, todo)}};
      } else if (isEmbeddedJson(f)) {
        name.resize(name.size() - kJsonSuffix.size());
        schema = {{"type", nlohmann::json::array({"object", "null"})}};
      } else if (f.has_presence() && f.real_containing_oneof() == nullptr) {
        schema = {{"anyOf", nlohmann::json::array({valueSchema(f, todo), {{"type", "null"}}})}};
      } else {
        schema = valueSchema(f, todo);
      }
      properties[name] = std::move(schema);
      if (f.real_containing_oneof() == nullptr) required.push_back(name);
    }
    defs[d->full_name()] = {{"type", "object"},
                            {"properties", std::move(properties)},
                            {"required", std::move(required)},
                            {"additionalProperties", false}};
  }
  return defs;
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
  const pb::Descriptor& d = *message.GetDescriptor();
  const pb::Reflection& r = *message.GetReflection();
  // Every key in the order nlohmann's object prints them (std::map's): with its value in
  // `values`, or with the repeated message field whose elements are converted one at a time.
  std::map<std::string, const pb::FieldDescriptor*> keys;
  std::map<std::string, nlohmann::json> values;
  for (int i = 0; i < d.field_count(); ++i) {
    const pb::FieldDescriptor& f = *d.field(i);
    if (f.is_repeated() && !f.is_map() && f.cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
        r.FieldSize(message, &f) > 0) {
      keys[f.name()] = &f;
      continue;
    }
    std::string name;
    nlohmann::json value;
    if (fieldJson(message, r, f, &name, &value)) {
      keys[name] = nullptr;
      values[name] = std::move(value);
    }
  }
  if (keys.empty()) {
    out << "{}\n";
    return;
  }
  out << "{\n";
  const char* comma = "";
  for (const auto& [name, streamed] : keys) {
    out << comma << "  " << dumpJson(nlohmann::json(name)) << ": ";
    comma = ",\n";
    if (streamed == nullptr) {
      out << indented(dumpJson(values[name], 2), 2);
      continue;
    }
    out << "[\n";
    const char* item_comma = "";
    for (int k = 0; k < r.FieldSize(message, streamed); ++k) {
      out << item_comma << "    "
          << indented(dumpJson(contractJson(r.GetRepeatedMessage(message, streamed, k)), 2),
                      4);
      item_comma = ",\n";
    }
    out << "\n  ]";
  }
  out << "\n}\n";
}

void printJson(std::ostream& out, const nlohmann::json& doc) { out << dumpJson(doc, 2) << "\n"; }

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

std::string endpoint(const std::string& ip, uint32_t port) {
  return ip.find(':') != std::string::npos ? fmt::format("[{}]:{}", ip, port)
                                           : fmt::format("{}:{}", ip, port);
}

}  // namespace bulkhead::cli
