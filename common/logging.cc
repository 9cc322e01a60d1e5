#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/format.h"
#include "common/text.h"

namespace bulkhead {
namespace {

// %J: the message payload as the inside of a JSON string, in ASCII: control characters, DEL
// and every non-ASCII character as \uXXXX, each invalid UTF-8 sequence as U+FFFD. The line
// stays valid JSON whatever a host or operator put in the text, and reaches no terminal raw.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string quoted =
        nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
            .dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::json::error_handler_t::replace);
    // Without the surrounding quotes.
    for (size_t i = 1; i + 1 < quoted.size(); ++i) {
      if (quoted[i] == '\x7f') {
        append(dest, "\\u007f");
      } else {
        dest.push_back(quoted[i]);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }

 private:
  static void append(spdlog::memory_buf_t& dest, std::string_view s) {
    dest.append(s.data(), s.data() + s.size());
  }
};

// %E: the message payload with non-printable characters escaped (escapeNonPrintable), so
// that text from hosts and operators can neither forge a line nor reach a terminal raw.
class EscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string text = escapeNonPrintable(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedMessage>();
  }
};

}  // namespace

std::unique_ptr<spdlog::formatter> textLogFormatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<EscapedMessage>('E').set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %n: %E");
  return formatter;
}

std::unique_ptr<spdlog::formatter> jsonLogFormatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<JsonEscapedMessage>('J').set_pattern(
      R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","logger":"%n","msg":"%J"})");
  return formatter;
}

absl::Status setupLogging(std::string_view program, std::string_view format,
                          std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(fmt::format(
        "--log-level: invalid value \"{}\": use trace, debug, info, warn, error or off", level));
  }
  auto logger = std::make_shared<spdlog::logger>(std::string(program),
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (format == "json") {
    logger->set_formatter(jsonLogFormatter());
  } else if (format == "text") {
    logger->set_formatter(textLogFormatter());
  } else {
    return absl::InvalidArgumentError(
        fmt::format("--log-format: invalid value \"{}\": use text or json", format));
  }
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

}  // namespace bulkhead
