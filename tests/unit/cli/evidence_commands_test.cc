// capture / evidence / isolate --capture-first: usage errors are caught before any controller
// is contacted (exit 2, one line naming the flag); help mentions the commands.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/cli.h"
#include "cli/evidence_commands.h"
#include "tests/unit/cli/cli_run.h"

namespace bulkhead::cli {
namespace {

using clitest::CliRun;

CliRun run(std::vector<std::string> args) { return clitest::runOffline(std::move(args)); }
int lines(const std::string& s) { return clitest::lineCount(s); }

TEST(EvidenceCommands, Registered) {
  for (const char* name : {"capture", "evidence", "evidence list", "evidence get",
                           "evidence verify", "evidence show"}) {
    EXPECT_TRUE(commands().count(name)) << name;
  }
}

TEST(EvidenceCommands, UsageErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string words;
  };
  for (const auto& c : std::vector<Case>{
           {{"capture", "h1"}, "--reason"},
           {{"capture", "h1", "--reason", ""}, "--reason"},
           {{"capture", "--reason", "INC-42"}, "HOST"},
           {{"capture", "h1", "h2", "--reason", "x"}, "too many arguments"},
           {{"capture", "h1", "--reason", "x", "--wait", "soon"}, "--wait"},
           {{"capture", "h1", "--reason", "x", "--collector-timeout", "5 parsecs"},
            "--collector-timeout"},
           {{"capture", "h1", "--reason", "x", "--max-binary-size", "lots"}, "--max-binary-size"},
           {{"capture", "h1", "--reason", "x", "--max-binary-size", "0"}, "--max-binary-size"},
           {{"capture", "h1", "--reason", "x", "--frobnicate"}, "frobnicate"},
           {{"evidence", "get"}, "ID"},
           {{"evidence", "get", "xyz"}, "invalid evidence id"},
           {{"evidence", "verify", "00"}, "invalid evidence id"},
           {{"evidence", "show"}, "ID"},
           {{"evidence", "frob"}, "unknown subcommand \"frob\""},
           {{"evidence"}, "subcommand"},
           {{"isolate", "h1", "--reason", "x", "--capture-first", "--dry-run"}, "--capture-first"},
       }) {
    CliRun r = run(c.args);
    EXPECT_EQ(r.code, kUsage) << ::testing::PrintToString(c.args) << ": " << r.err;
    EXPECT_NE(r.err.find(c.words), std::string::npos) << r.err;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(EvidenceCommands, ExistingOutputIsNotOverwritten) {
  std::string path = ::testing::TempDir() + "/evidence_commands_test.existing";
  { std::ofstream(path) << "keep"; }
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"capture", "h1", "--reason", "x", "--output", path},
           {"evidence", "get", "0123456789abcdef", "--output", path}}) {
    CliRun r = run(args);
    EXPECT_EQ(r.code, kUsage) << r.err;
    EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
    EXPECT_EQ(lines(r.err), 1) << r.err;
  }
  std::remove(path.c_str());
}

TEST(EvidenceCommands, ValidInputReachesTheClient) {
  // Past argument checks the identity is loaded: the error is about --identity, not usage.
  CliRun r = run({"capture", "h1", "--reason", "INC-42", "--max-binary-size", "10MiB",
                  "--collector-timeout", "2s"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("/nonexistent"), std::string::npos) << r.err;
}

TEST(EvidenceCommands, Help) {
  std::ostringstream out, err;
  Io io{out, err};
  EXPECT_EQ(runCli({"--help"}, io), kOk);
  EXPECT_NE(out.str().find("capture"), std::string::npos);
  EXPECT_NE(out.str().find("evidence verify"), std::string::npos);
  EXPECT_NE(out.str().find("evidence show"), std::string::npos);
  for (const auto& args : std::vector<std::vector<std::string>>{{"capture", "--help"},
                                                                {"evidence", "get", "--help"},
                                                                {"evidence", "--help"},
                                                                {"isolate", "--help"}}) {
    CliRun r = run(args);
    EXPECT_EQ(r.code, kOk) << args[0];
    EXPECT_FALSE(r.out.empty());
  }
  EXPECT_NE(run({"capture", "--help"}).out.find("--reason"), std::string::npos);
  EXPECT_NE(run({"isolate", "--help"}).out.find("--capture-first"), std::string::npos);
}

TEST(EvidenceCommands, CaptureProgressNamesTheStageAsText) {
  v1::CommandProgress p;
  p.set_capture_stage(v1::CAPTURE_STAGE_COLLECTING);
  p.set_done(3);
  p.set_total(10);
  p.set_detail("processes ok 120 ms");
  EXPECT_EQ(captureProgressLine("h1", p), "capture h1: collecting 3/10 processes ok 120 ms");
  p.set_capture_stage(v1::CAPTURE_STAGE_PACKING);
  p.set_done(3 << 19);
  p.set_total(8 << 20);
  p.clear_detail();
  EXPECT_EQ(captureProgressLine("h1", p), "capture h1: packing 1.5/8.0 MiB");
  p.set_capture_stage(v1::CAPTURE_STAGE_UPLOADING);
  EXPECT_EQ(captureProgressLine("h1", p), "capture h1: uploading 1.5/8.0 MiB");
  p.set_capture_stage(v1::CAPTURE_STAGE_STORED);
  p.set_done(1);
  p.set_total(1);
  p.set_detail("abcd");
  EXPECT_EQ(captureProgressLine("h1", p), "capture h1: stored 1/1 abcd");
  // An older agent's stage (text in the reserved field 2) is not read: no stage shown.
  p.clear_capture_stage();
  p.set_done(3);
  p.set_total(10);
  p.set_detail("processes ok 120 ms");
  EXPECT_EQ(captureProgressLine("h1", p), "capture h1: 3/10 processes ok 120 ms");
}

}  // namespace
}  // namespace bulkhead::cli
