// Text output: what the controller or an agent sent is shown escaped, one row per line.
#include "cli/output.h"

#include <gtest/gtest.h>

#include <sstream>

#include "cli/operator_client.h"
#include "tests/unit/cli/cli_run.h"

namespace bulkhead::cli {
namespace {

TEST(Output, EscInAHostnameOrReasonInATableIsEscaped) {
  std::ostringstream out;
  printTable(out, {{"HOST", "REASON"},
                   {"web-01\x1b]0;pwned\x07\x1b[2J", "INC-1\n9  2026-01-01  alice  release  ok"},
                   {"web-02", "caf\xc3\xa9"}});
  const std::string text = out.str();
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_EQ(text.find('\x07'), std::string::npos) << text;
  EXPECT_EQ(clitest::lineCount(text), 3) << text;  // header + two rows, nothing forged
  EXPECT_NE(text.find("web-01\\x1b]0;pwned\\x07\\x1b[2J"), std::string::npos) << text;
  EXPECT_NE(text.find("INC-1\\n9  2026-01-01"), std::string::npos) << text;
  EXPECT_NE(text.find("caf\xc3\xa9"), std::string::npos) << text;  // printable UTF-8 as is
  // Columns line up on the escaped text.
  std::istringstream lines(text);
  std::string header, first, second;
  std::getline(lines, header);
  std::getline(lines, first);
  std::getline(lines, second);
  EXPECT_EQ(header.find("REASON"), first.find("INC-1"));
  EXPECT_EQ(header.find("REASON"), second.find("caf"));
}

TEST(Output, ControllerErrorsAreEscaped) {
  std::ostringstream err;
  int code = reportRpcError(
      "status", "127.0.0.1:7443",
      grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown host \"x\x1b[31m\nforged line\""), err);
  EXPECT_EQ(code, kUsage);
  EXPECT_EQ(err.str(), "bulkhead status: unknown host \"x\\x1b[31m\\nforged line\"\n");
}

}  // namespace
}  // namespace bulkhead::cli
