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

#include "common/json.h"

namespace bulkhead::evidence {

// The typed getters are common/json.h's (one set for all foreign JSON), under the names the
// evidence code uses.
using bulkhead::jsonBool;
using bulkhead::jsonBoolOr;
using bulkhead::jsonInt;
using bulkhead::jsonIntOr;
using bulkhead::jsonString;
using bulkhead::jsonStringOr;
// j[key] when it is a non-negative integer.
inline std::optional<uint64_t> jsonUnsigned(const nlohmann::json& j, std::string_view key) {
  return bulkhead::jsonUint(j, key);
}

// `text` as valid UTF-8 with no control characters (each invalid or control byte written as
// \xNN; control characters kept when `escape_controls` is false), at most `max_bytes` long
// before the marker a clipped text ends with: "...(N bytes more)".
std::string boundedText(std::string_view text, size_t max_bytes, bool escape_controls = true);

}  // namespace bulkhead::evidence
