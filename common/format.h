// fmt support for absl types. Debian's abseil is built with its own absl::string_view (not
// std::string_view), so absl::StrCat does not take std::string_view: build strings with
// fmt::format, and include this header to format absl::string_view and absl::Status.
#pragma once

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <cstdint>
#include <ctime>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  // Formats the message only (no code prefix): messages are written for people.
  template <typename Ctx>
  auto format(const absl::Status& s, Ctx& ctx) const {
    auto m = s.message();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(m.data(), m.size()), ctx);
  }
};

namespace bulkhead {

// A Unix time in milliseconds as messages and audit rows show it: "2026-12-05T20:13:35Z" (UTC,
// whole seconds).
inline std::string utcTimeText(int64_t unix_ms) {
  const auto secs = static_cast<std::time_t>(unix_ms / 1000 - (unix_ms % 1000 < 0 ? 1 : 0));
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(secs));
}

}  // namespace bulkhead
