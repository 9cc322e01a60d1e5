// spdlog set-up shared by the daemons: `--log-format text|json`, `--log-level LEVEL`.
#pragma once

#include <memory>
#include <string_view>

#include <spdlog/formatter.h>

#include "absl/status/status.h"

namespace bulkhead {

// The text format's formatter: local time, level, logger name, then the message with
// non-printable characters escaped (common/text.h), one record per line.
std::unique_ptr<spdlog::formatter> textLogFormatter();

// The JSON format's formatter: one object per line with ts (UTC, RFC 3339), level, logger and
// msg; msg is ASCII whatever the text held (non-ASCII, controls and DEL as \uXXXX, invalid
// UTF-8 as U+FFFD), so a line always parses.
std::unique_ptr<spdlog::formatter> jsonLogFormatter();

// Configures the default logger on stderr. JSON lines have ts (UTC, RFC 3339), level, logger
// and msg (escaped). Errors name the bad flag value.
absl::Status setupLogging(std::string_view program, std::string_view format,
                          std::string_view level);

}  // namespace bulkhead
