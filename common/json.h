// JSON that came from outside the process (an agent's command result, a bundle's manifest, a
// file on a host): typed getters that never throw, a bounded parser, and a serialiser that
// never throws on the invalid UTF-8 host data carries (argv, file names, utmp fields).
//
// nlohmann's own accessors (`get<T>()`, `value()`, `at()`) throw on a wrong type, and `dump()`
// throws on invalid UTF-8: never use them on foreign documents.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace bulkhead {

// The member `key` of `doc` when `doc` is an object holding `key` with the asked type;
// nullopt otherwise (missing key, wrong type, `doc` not an object). Integer getters take JSON
// integers that fit the type (a float such as 1.5 or 1e3, or an out-of-range value, is nullopt).
std::optional<std::string> jsonString(const nlohmann::json& doc, std::string_view key);
std::optional<int64_t> jsonInt(const nlohmann::json& doc, std::string_view key);
std::optional<uint64_t> jsonUint(const nlohmann::json& doc, std::string_view key);
std::optional<bool> jsonBool(const nlohmann::json& doc, std::string_view key);

// The member `key` of `doc` when it is an array (resp. an object); nullptr otherwise. The
// pointer is into `doc` and lives as long as `doc` is not modified.
const nlohmann::json* jsonArray(const nlohmann::json& doc, std::string_view key);
const nlohmann::json* jsonObject(const nlohmann::json& doc, std::string_view key);

// Shorthands: the member, or `fallback` when the getter above gives nothing.
std::string jsonStringOr(const nlohmann::json& doc, std::string_view key,
                         std::string_view fallback = {});
int64_t jsonIntOr(const nlohmann::json& doc, std::string_view key, int64_t fallback = 0);
uint64_t jsonUintOr(const nlohmann::json& doc, std::string_view key, uint64_t fallback = 0);
bool jsonBoolOr(const nlohmann::json& doc, std::string_view key, bool fallback = false);
// Element count of the array member `key`; 0 when missing or not an array.
size_t jsonArraySize(const nlohmann::json& doc, std::string_view key);

// Nesting depth parseForeignJson() accepts by default.
inline constexpr int kMaxForeignJsonDepth = 64;

// Parses `text`; nullopt when it is not JSON or nests arrays/objects deeper than `max_depth`
// (dump(), comparison and copy of a document recurse once per level). Never throws.
std::optional<nlohmann::json> parseForeignJson(std::string_view text,
                                               int max_depth = kMaxForeignJsonDepth);

// Serialises `doc` like `doc.dump(indent)`, but replaces each invalid UTF-8 sequence in a
// string with U+FFFD instead of throwing.
std::string dumpJson(const nlohmann::json& doc, int indent = -1);

}  // namespace bulkhead
