#include "common/json.h"

#include <limits>

namespace bulkhead {
namespace {

const nlohmann::json* member(const nlohmann::json& doc, std::string_view key) {
  if (!doc.is_object()) return nullptr;
  auto it = doc.find(key);
  return it == doc.end() ? nullptr : &*it;
}

// Deepest array/object nesting in `text`, ignoring brackets inside strings. Stops counting
// once past `limit`.
int nestingDepth(std::string_view text, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > deepest) deepest = depth;
        if (deepest > limit) return deepest;
        break;
      case ']':
      case '}': --depth; break;
      default: break;
    }
  }
  return deepest;
}

}  // namespace

std::optional<std::string> jsonString(const nlohmann::json& doc, std::string_view key) {
  const nlohmann::json* v = member(doc, key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return v->get_ref<const std::string&>();
}

std::optional<int64_t> jsonInt(const nlohmann::json& doc, std::string_view key) {
  const nlohmann::json* v = member(doc, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_number_unsigned()) {
    auto u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v->is_number_integer()) return v->get<int64_t>();
  return std::nullopt;
}

std::optional<uint64_t> jsonUint(const nlohmann::json& doc, std::string_view key) {
  const nlohmann::json* v = member(doc, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  if (v->is_number_integer()) {
    auto i = v->get<int64_t>();
    if (i < 0) return std::nullopt;
    return static_cast<uint64_t>(i);
  }
  return std::nullopt;
}

std::optional<bool> jsonBool(const nlohmann::json& doc, std::string_view key) {
  const nlohmann::json* v = member(doc, key);
  if (v == nullptr || !v->is_boolean()) return std::nullopt;
  return v->get<bool>();
}

const nlohmann::json* jsonArray(const nlohmann::json& doc, std::string_view key) {
  const nlohmann::json* v = member(doc, key);
  return v != nullptr && v->is_array() ? v : nullptr;
}

const nlohmann::json* jsonObject(const nlohmann::json& doc, std::string_view key) {
  const nlohmann::json* v = member(doc, key);
  return v != nullptr && v->is_object() ? v : nullptr;
}

std::string jsonStringOr(const nlohmann::json& doc, std::string_view key,
                         std::string_view fallback) {
  auto v = jsonString(doc, key);
  return v ? *std::move(v) : std::string(fallback);
}

int64_t jsonIntOr(const nlohmann::json& doc, std::string_view key, int64_t fallback) {
  return jsonInt(doc, key).value_or(fallback);
}

uint64_t jsonUintOr(const nlohmann::json& doc, std::string_view key, uint64_t fallback) {
  return jsonUint(doc, key).value_or(fallback);
}

bool jsonBoolOr(const nlohmann::json& doc, std::string_view key, bool fallback) {
  return jsonBool(doc, key).value_or(fallback);
}

size_t jsonArraySize(const nlohmann::json& doc, std::string_view key) {
  const nlohmann::json* a = jsonArray(doc, key);
  return a == nullptr ? 0 : a->size();
}

std::optional<nlohmann::json> parseForeignJson(std::string_view text, int max_depth) {
  if (nestingDepth(text, max_depth) > max_depth) return std::nullopt;
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return std::nullopt;
  return doc;
}

std::string dumpJson(const nlohmann::json& doc, int indent) {
  return doc.dump(indent, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

}  // namespace bulkhead
