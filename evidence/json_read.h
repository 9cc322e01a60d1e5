// Reading foreign JSON (manifests, collection logs and artifacts written by agents) without
// exceptions, and bounding foreign text before it is kept or shown. A missing key, a value of
// another type or a number out of range gives the fallback; nothing here throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace bulkhead::evidence {

// j[key] when j is an object holding a string there.
std::optional<std::string> jsonString(const nlohmann::json& j, std::string_view key);
// j[key] when it is an integer (signed, or unsigned within int64_t).
std::optional<int64_t> jsonInt(const nlohmann::json& j, std::string_view key);
// j[key] when it is a non-negative integer.
std::optional<uint64_t> jsonUnsigned(const nlohmann::json& j, std::string_view key);
// j[key] when it is a boolean.
std::optional<bool> jsonBool(const nlohmann::json& j, std::string_view key);

inline std::string jsonStringOr(const nlohmann::json& j, std::string_view key,
                                std::string fallback = {}) {
  auto v = jsonString(j, key);
  return v ? *std::move(v) : std::move(fallback);
}
inline int64_t jsonIntOr(const nlohmann::json& j, std::string_view key, int64_t fallback = 0) {
  return jsonInt(j, key).value_or(fallback);
}
inline bool jsonBoolOr(const nlohmann::json& j, std::string_view key, bool fallback = false) {
  return jsonBool(j, key).value_or(fallback);
}

// `text` as valid UTF-8 with no control characters (each invalid or control byte written as
// \xNN; control characters kept when `escape_controls` is false), at most `max_bytes` long
// before the marker a clipped text ends with: "...(N bytes more)".
std::string boundedText(std::string_view text, size_t max_bytes, bool escape_controls = true);

}  // namespace bulkhead::evidence
