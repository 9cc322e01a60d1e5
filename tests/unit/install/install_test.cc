// What installing ships besides the programs: `--version` of each program, the bash completion
// scripts (run in a real bash) and the manual pages. Expected commands and flags come from the
// programs' own --help text, so a completion or a manual page that drifts from what the
// program parses fails here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "common/version.h"

namespace bulkhead {
namespace {

namespace fs = std::filesystem;
using ::testing::IsEmpty;
using ::testing::IsSupersetOf;

struct Ran {
  int code = -1;
  std::string out;
  std::string err;
};

std::string shellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs argv (through /bin/sh, each word quoted), with `env` (VAR=value words) prepended.
Ran runProgram(const std::vector<std::string>& argv, const std::string& env = "") {
  const fs::path err_file =
      fs::path(::testing::TempDir()) / ("install-test-stderr-" + std::to_string(::getpid()));
  std::string command = env;
  for (const auto& a : argv) command += " " + shellQuote(a);
  command += " 2>" + shellQuote(err_file.string()) + " </dev/null";
  Ran ran;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return ran;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) ran.out.append(buf, n);
  const int status = ::pclose(pipe);
  ran.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  ran.err = readFile(err_file);
  fs::remove(err_file);
  return ran;
}

// The long flags a program_options --help text lists ("  --state-dir arg", "  -h [ --help ]").
std::set<std::string> flagsInHelp(const std::string& help) {
  static const std::regex option(R"(^  (?:-\w \[ )?(--[a-z0-9][a-z0-9-]*))");
  std::set<std::string> flags;
  std::istringstream lines(help);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, option)) flags.insert(m[1]);
  }
  return flags;
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// What `script`'s completion function offers for the command line `line` (words; the last
// one is the word being completed), from a real bash.
std::set<std::string> complete(const fs::path& script, const std::string& function,
                               const std::vector<std::string>& line) {
  // $1 the script, $2 the function, then the words.
  const std::string driver =
      "source \"$1\" || exit 3; f=$2; shift 2; COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); "
      "$f || exit 4; printf '%s\\n' \"${COMPREPLY[@]}\"";
  std::vector<std::string> argv = {"bash", "-c", driver, "bash", script.string(), function};
  argv.insert(argv.end(), line.begin(), line.end());
  const Ran ran = runProgram(argv);
  EXPECT_EQ(ran.code, 0) << ran.err;
  EXPECT_EQ(ran.err, "");
  std::set<std::string> offered;
  for (const auto& w : words(ran.out)) offered.insert(w);
  return offered;
}

// ---- --version and --help -------------------------------------------------------------------

struct Program {
  std::string name;
  std::string path;
};

const std::vector<Program>& programs() {
  static const std::vector<Program> all = {{"bulkhead", BULKHEAD_BIN},
                                           {"bulkhead-agent", BULKHEAD_AGENT_BIN},
                                           {"bulkhead-controller", BULKHEAD_CONTROLLER_BIN},
                                           {"bulkhead-report", BULKHEAD_REPORT_BIN}};
  return all;
}

TEST(VersionTest, EveryProgramPrintsTheVersionAndTheGitRevision) {
  for (const auto& p : programs()) {
    const Ran ran = runProgram({p.path, "--version"});
    EXPECT_EQ(ran.code, 0) << p.name << ": " << ran.err;
    EXPECT_EQ(ran.err, "") << p.name;
    const std::regex line(p.name + " " + std::string(projectVersion()) + R"( \(git [A-Za-z0-9._+~-]+\)\n)");
    EXPECT_TRUE(std::regex_match(ran.out, line)) << p.name << ": " << ran.out;
    EXPECT_EQ(ran.out, versionLine(p.name) + "\n") << p.name << " built at another revision";
  }
}

TEST(VersionTest, ARevisionFromGitInAGitWorkTree) {
  if (!fs::exists(fs::path(BULKHEAD_SOURCE_DIR) / ".git")) {
    GTEST_SKIP() << "the source tree is no git work tree: the revision is BULKHEAD_GIT_REVISION";
  }
  const Ran head = runProgram({"git", "-C", BULKHEAD_SOURCE_DIR, "rev-parse", "--short", "HEAD"});
  ASSERT_EQ(head.code, 0) << head.err;
  const std::string abbreviated = head.out.substr(0, head.out.find('\n'));
  ASSERT_FALSE(abbreviated.empty());
  // `git describe` ends with the commit, abbreviated at least as much as --short's.
  EXPECT_THAT(std::string(gitRevision()), ::testing::HasSubstr(abbreviated.substr(0, 7)));
}

TEST(HelpTest, EveryProgramPrintsItsHelpOnStdoutAndExitsZero) {
  // help2man reads --help and --version from stdout and needs status 0.
  for (const auto& p : programs()) {
    const Ran ran = runProgram({p.path, "--help"});
    EXPECT_EQ(ran.code, 0) << p.name << ": " << ran.err;
    EXPECT_EQ(ran.err, "") << p.name;
    EXPECT_TRUE(ran.out.starts_with("usage") || ran.out.starts_with("Usage")) << p.name;
  }
}

TEST(HelpTest, HelpAllShowsEveryCommandsOptions) {
  const Ran ran = runProgram({BULKHEAD_BIN, "--help-all"});
  ASSERT_EQ(ran.code, 0) << ran.err;
  for (const auto& [name, info] : cli::commands()) {
    std::vector<std::string> argv = {BULKHEAD_BIN};
    for (const auto& w : words(name)) argv.push_back(w);
    argv.emplace_back("--help");
    const Ran help = runProgram(argv);
    ASSERT_EQ(help.code, 0) << name << ": " << help.err;
    EXPECT_THAT(ran.out, ::testing::HasSubstr(help.out)) << name;
  }
}

// ---- bash completion ------------------------------------------------------------------------

fs::path completionScript(const std::string& program) {
  return fs::path(BULKHEAD_BINARY_DIR) / "completion" / program;
}

TEST(CompletionTest, TheBuiltScriptIsWhatTheProgramPrints) {
  for (const std::string program : {"bulkhead", "bulkhead-agent", "bulkhead-controller"}) {
    const std::string path = program == "bulkhead"         ? BULKHEAD_BIN
                             : program == "bulkhead-agent" ? BULKHEAD_AGENT_BIN
                                                           : BULKHEAD_CONTROLLER_BIN;
    const Ran ran = runProgram({path, "completion", "bash"});
    ASSERT_EQ(ran.code, 0) << ran.err;
    EXPECT_EQ(readFile(completionScript(program)), ran.out) << program;
    // Sourcing it registers the function for the program.
    const Ran registered = runProgram({"bash", "-c", "source \"$1\" && complete -p \"$2\"", "bash",
                                       completionScript(program).string(), program});
    EXPECT_EQ(registered.code, 0) << registered.err;
    EXPECT_THAT(registered.out,
                ::testing::HasSubstr("-F " + bashCompletionFunction(program) + " " + program));
  }
  const Ran bad = runProgram({BULKHEAD_BIN, "completion", "fish"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.err, ::testing::HasSubstr("invalid shell \"fish\""));
}

TEST(CompletionTest, BulkheadOffersEveryCommandWord) {
  const fs::path script = completionScript("bulkhead");
  std::set<std::string> first_words;
  for (const auto& [name, info] : cli::commands()) first_words.insert(words(name).front());
  EXPECT_EQ(complete(script, "_bulkhead", {"bulkhead", ""}), first_words);
  // Global options and their values before the command are skipped.
  EXPECT_EQ(
      complete(script, "_bulkhead", {"bulkhead", "--controller", "pki", "--json", "evidence", ""}),
      complete(script, "_bulkhead", {"bulkhead", "evidence", ""}));
  for (const auto& [name, info] : cli::commands()) {
    const auto w = words(name);
    if (w.size() < 2) continue;
    EXPECT_THAT(complete(script, "_bulkhead", {"bulkhead", w[0], ""}), ::testing::Contains(w[1]))
        << name;
  }
  EXPECT_EQ(complete(script, "_bulkhead", {"bulkhead", "pk"}), std::set<std::string>{"pki"});
}

TEST(CompletionTest, BulkheadOffersEveryFlagOfEveryCommandAsItsHelpListsThem) {
  const fs::path script = completionScript("bulkhead");
  const Ran top = runProgram({BULKHEAD_BIN, "--help"});
  const std::set<std::string> global = flagsInHelp(top.out);
  ASSERT_THAT(global, IsSupersetOf({"--controller", "--identity", "--json", "--version"}));
  EXPECT_EQ(complete(script, "_bulkhead", {"bulkhead", "--"}), global);
  for (const auto& [name, info] : cli::commands()) {
    std::vector<std::string> argv = {BULKHEAD_BIN};
    std::vector<std::string> line = {"bulkhead"};
    for (const auto& w : words(name)) {
      argv.push_back(w);
      line.push_back(w);
    }
    argv.emplace_back("--help");
    const Ran help = runProgram(argv);
    ASSERT_EQ(help.code, 0) << name << ": " << help.err;
    std::set<std::string> expected = flagsInHelp(help.out);
    expected.insert(global.begin(), global.end());
    line.emplace_back("--");
    EXPECT_EQ(complete(script, "_bulkhead", line), expected) << name;
  }
}

TEST(CompletionTest, AFlagsValueIsLeftToFileNameCompletion) {
  const fs::path script = completionScript("bulkhead");
  EXPECT_THAT(complete(script, "_bulkhead", {"bulkhead", "isolate", "--reason", ""}), IsEmpty());
  EXPECT_THAT(complete(script, "_bulkhead", {"bulkhead", "--identity", ""}), IsEmpty());
  // A switch takes no value: the command words follow it.
  EXPECT_THAT(complete(script, "_bulkhead", {"bulkhead", "--json", "is"}),
              ::testing::ElementsAre("isolate"));
}

TEST(CompletionTest, AgentOffersItsFlagsAndSubcommands) {
  const fs::path script = completionScript("bulkhead-agent");
  const Ran help = runProgram({BULKHEAD_AGENT_BIN, "--help"});
  const std::set<std::string> flags = flagsInHelp(help.out);
  ASSERT_THAT(flags, IsSupersetOf({"--controller", "--state-dir", "--restore"}));
  EXPECT_EQ(complete(script, "_bulkhead_agent", {"bulkhead-agent", "--"}), flags);
  EXPECT_EQ(complete(script, "_bulkhead_agent", {"bulkhead-agent", "status", "--"}), flags);
  const Ran signal_help = runProgram({BULKHEAD_AGENT_BIN, "signal", "--help"});
  const std::set<std::string> signal_flags = flagsInHelp(signal_help.out);
  ASSERT_THAT(signal_flags, IsSupersetOf({"--source", "--rule", "--ip"}));
  EXPECT_EQ(complete(script, "_bulkhead_agent", {"bulkhead-agent", "signal", "--"}), signal_flags);
  for (const std::string sub : {"wazuh-active-response", "sshguard-backend"}) {
    const auto offered = complete(script, "_bulkhead_agent", {"bulkhead-agent", sub, "--"});
    EXPECT_THAT(offered, IsSupersetOf({"--state-dir", "--timeout", "--severity", "--help"})) << sub;
    EXPECT_THAT(signal_flags, IsSupersetOf(offered)) << sub;
  }
  EXPECT_EQ(complete(script, "_bulkhead_agent", {"bulkhead-agent", ""}),
            (std::set<std::string>{"completion", "enroll", "signal", "sshguard-backend", "status",
                                   "wazuh-active-response"}));
  // enroll's flags are the ones its --help names.
  const Ran enroll_help = runProgram({BULKHEAD_AGENT_BIN, "enroll", "--help"});
  EXPECT_EQ(complete(script, "_bulkhead_agent", {"bulkhead-agent", "enroll", "--"}),
            flagsInHelp(enroll_help.out));
}

TEST(CompletionTest, ControllerOffersItsFlagsAndSubcommands) {
  const fs::path script = completionScript("bulkhead-controller");
  const Ran help = runProgram({BULKHEAD_CONTROLLER_BIN, "--help"});
  EXPECT_EQ(complete(script, "_bulkhead_controller", {"bulkhead-controller", "--"}),
            flagsInHelp(help.out));
  for (const std::string sub : {"backup", "restore"}) {
    const Ran sub_help = runProgram({BULKHEAD_CONTROLLER_BIN, sub, "--help"});
    ASSERT_EQ(sub_help.code, 0) << sub_help.err;
    EXPECT_EQ(complete(script, "_bulkhead_controller", {"bulkhead-controller", sub, "--"}),
              flagsInHelp(sub_help.out))
        << sub;
  }
  EXPECT_EQ(complete(script, "_bulkhead_controller", {"bulkhead-controller", ""}),
            (std::set<std::string>{"backup", "completion", "restore"}));
  EXPECT_THAT(complete(script, "_bulkhead_controller", {"bulkhead-controller", "--data-dir", ""}),
              IsEmpty());
}

// ---- manual pages ---------------------------------------------------------------------------

#ifdef BULKHEAD_MAN_PAGES
fs::path manPage(const std::string& file) { return fs::path(BULKHEAD_BINARY_DIR) / "man" / file; }

// The page's roff source with "\-" as "-", so flags read as typed.
std::string manText(const std::string& file) {
  std::string text = readFile(manPage(file));
  for (size_t at; (at = text.find("\\-")) != std::string::npos;) text.erase(at, 1);
  return text;
}

TEST(ManualTest, EveryPageHasItsSectionsAndRendersWithoutWarnings) {
  const bool have_man = runProgram({"sh", "-c", "command -v man"}).code == 0;
  for (const std::string file : {"bulkhead.1", "bulkhead-agent.8", "bulkhead-controller.8"}) {
    const std::string text = manText(file);
    ASSERT_FALSE(text.empty()) << file << " missing";
    const std::string program = file.substr(0, file.find('.'));
    for (const std::string section : {".TH ", ".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION"}) {
      EXPECT_THAT(text, ::testing::HasSubstr(section)) << file;
    }
    EXPECT_THAT(text, ::testing::HasSubstr(std::string(projectVersion()))) << file;
    if (!have_man) continue;
    const Ran rendered =
        runProgram({"man", "--warnings", "-l", manPage(file).string()}, "MANWIDTH=80");
    EXPECT_EQ(rendered.code, 0) << file << ": " << rendered.err;
    EXPECT_EQ(rendered.err, "") << file;
    EXPECT_THAT(rendered.out, ::testing::HasSubstr(program)) << file;
  }
}

TEST(ManualTest, TheBulkheadPageCarriesEveryCommandWithItsFlags) {
  const std::string text = manText("bulkhead.1");
  for (const auto& [name, info] : cli::commands()) {
    EXPECT_THAT(text, ::testing::HasSubstr("bulkhead " + name)) << name;
    std::vector<std::string> argv = {BULKHEAD_BIN};
    for (const auto& w : words(name)) argv.push_back(w);
    argv.emplace_back("--help");
    for (const auto& flag : flagsInHelp(runProgram(argv).out)) {
      EXPECT_THAT(text, ::testing::HasSubstr(flag)) << name;
    }
  }
}

TEST(ManualTest, TheDaemonPagesCarryTheirFlags) {
  for (const auto& [file, bin] : std::vector<std::pair<std::string, std::string>>{
           {"bulkhead-agent.8", BULKHEAD_AGENT_BIN},
           {"bulkhead-controller.8", BULKHEAD_CONTROLLER_BIN}}) {
    const std::string text = manText(file);
    for (const auto& flag : flagsInHelp(runProgram({bin, "--help"}).out)) {
      EXPECT_THAT(text, ::testing::HasSubstr(flag)) << file;
    }
  }
}
#endif

}  // namespace
}  // namespace bulkhead
