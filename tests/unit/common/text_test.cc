// The one escaping of outside text for terminals and log lines, and the text and JSON log
// formats.
#include "common/text.h"

#include <gtest/gtest.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/logging.h"

namespace bulkhead {
namespace {

TEST(EscapeNonPrintable, PrintableTextIsUnchanged) {
  for (std::string_view s : {"", "INC-77 web-01", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
                             "C:\\path\\n is a backslash", "emoji \xf0\x9f\x94\xa5"}) {
    EXPECT_EQ(escapeNonPrintable(s), s);
    EXPECT_EQ(findNonPrintable(s), std::nullopt) << s;
  }
}

TEST(EscapeNonPrintable, ControlsSeparatorsBidiAndBadBytesAreEscaped) {
  EXPECT_EQ(escapeNonPrintable("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(escapeNonPrintable("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(escapeNonPrintable(std::string_view("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(escapeNonPrintable("del\x7f"), "del\\x7f");
  EXPECT_EQ(escapeNonPrintable("c1 \xc2\x9b"
                               "31m"),
            "c1 \\u009b31m");                                      // 8-bit CSI
  EXPECT_EQ(escapeNonPrintable("ls\xe2\x80\xa8x"), "ls\\u2028x");  // line separator
  EXPECT_EQ(escapeNonPrintable("txt.\xe2\x80\xae"
                               "exe"),
            "txt.\\u202eexe");  // RTL override
  EXPECT_EQ(escapeNonPrintable("bad \xff\xfe"), "bad \\xff\\xfe");
  EXPECT_EQ(escapeNonPrintable("overlong \xc0\xaf"), "overlong \\xc0\\xaf");
  EXPECT_EQ(escapeNonPrintable("cut \xe6\x97"), "cut \\xe6\\x97");
  EXPECT_EQ(escapeNonPrintable("surrogate \xed\xa0\x80"), "surrogate \\xed\\xa0\\x80");
}

TEST(EscapeNonPrintable, FindNamesTheFirstOffender) {
  auto f = findNonPrintable("INC-1\nforged");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->offset, 5u);
  EXPECT_EQ(f->shown, "\\n");
  f = findNonPrintable("caf\xc3\xa9\x1b");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->offset, 5u);
  EXPECT_EQ(f->shown, "\\x1b");
}

// The daemons' text log: a message holding a newline or ESC stays one escaped line.
TEST(TextLog, NonPrintablesInAMessageAreEscapedOnOneLine) {
  char path[] = "/tmp/bulkhead-log-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  std::fflush(stderr);
  int saved = ::dup(2);
  ASSERT_GE(saved, 0);
  ASSERT_EQ(::dup2(fd, 2), 2);
  ASSERT_TRUE(setupLogging("bulkhead-test", "text", "info").ok());
  spdlog::info("isolate reason {}", "INC-1\n2026-01-01T00:00:00.000 info  bulkhead: forged\x1b[2J");
  spdlog::default_logger()->flush();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::close(fd);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  ::unlink(path);
  std::string out = text.str();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << out;  // one line
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_NE(
      out.find("isolate reason INC-1\\n2026-01-01T00:00:00.000 info  bulkhead: forged\\x1b[2J"),
      std::string::npos)
      << out;
}

TEST(JsonLog, HostileTextGivesOneParseableAsciiLineWithTheTextKept) {
  // ESC, DEL, a C1 control in UTF-8 (U+009B, CSI), an invalid byte, a quote, a backslash.
  const std::string payload = "a\x1b[2J\x7f\xc2\x9b\xff\"\\z\n";
  const spdlog::details::log_msg msg(spdlog::source_loc{}, "bulkhead-test", spdlog::level::warn,
                                     payload);
  spdlog::memory_buf_t buf;
  jsonLogFormatter()->format(msg, buf);
  const std::string line(buf.data(), buf.size());
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;  // one line
  for (size_t i = 0; i + 1 < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << int{c} << " at " << i << " in " << line;
  }
  const auto doc = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(doc.is_object()) << line;
  EXPECT_EQ(doc.value("level", ""), "warning");
  EXPECT_EQ(doc.value("logger", ""), "bulkhead-test");
  // The text survives; only the invalid byte becomes U+FFFD.
  EXPECT_EQ(doc.value("msg", ""), "a\x1b[2J\x7f\xc2\x9b\xef\xbf\xbd\"\\z\n");
}

}  // namespace
}  // namespace bulkhead
