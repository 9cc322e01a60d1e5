// The reporting subcommands (agent/daemon/report_commands) with a fake signal socket and a
// scripted stdin: exit codes, what is sent, the Wazuh handshake, sshguard's loop.
#include "agent/daemon/report_commands.h"

#include <gtest/gtest.h>

#include <deque>
#include <fstream>
#include <sstream>

namespace bulkhead::agent {
namespace {

namespace v1 = bulkhead::v1;
using namespace std::chrono_literals;

class FakeIo {
 public:
  FakeIo() {
    io.exchange = [this](const std::string& line, std::chrono::milliseconds timeout) {
      auto request = decodeSignalRequest(line);
      EXPECT_TRUE(request.ok()) << request.status();
      if (request.ok()) sent.push_back(request->signal);
      timeouts.push_back(timeout);
      if (answers.empty()) return absl::StatusOr<std::string>(absl::UnavailableError("no agent"));
      auto a = answers.front();
      answers.pop_front();
      return a;
    };
    io.read_line = [this](size_t,
                          std::chrono::milliseconds) -> absl::StatusOr<std::optional<std::string>> {
      if (input.empty()) return std::optional<std::string>();
      std::string l = input.front();
      input.pop_front();
      return std::optional<std::string>(l);
    };
    io.out = [this](const std::string& s) {
      out += s;
      // The Wazuh handshake: check_keys must be written before the answer is read.
      out_before_read.push_back(input.size());
    };
    io.err = [this](const std::string& s) { err += s + "\n"; };
  }
  static absl::StatusOr<std::string> recorded(const std::string& id) {
    return encodeSignalResponse({SignalResult::kRecorded, id, v1::SIGNAL_DISPOSITION_ACTED, ""});
  }
  static absl::StatusOr<std::string> failed(SignalResult r, const std::string& error) {
    return encodeSignalResponse({r, "", v1::SIGNAL_DISPOSITION_UNSPECIFIED, error});
  }

  ReportIo io;
  std::deque<absl::StatusOr<std::string>> answers;
  std::deque<std::string> input;
  std::vector<v1::Signal> sent;
  std::vector<std::chrono::milliseconds> timeouts;
  std::vector<size_t> out_before_read;
  std::string out, err;
};

ReportCommand command(const std::vector<std::string>& args) {
  auto c = parseReportCommand(args);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(SignalCommand, ExitCodes) {
  auto c = command({"signal", "--source", "fail2ban", "--rule", "sshd", "--ip", "203.0.113.7",
                    "--timeout", "3s"});
  {
    FakeIo f;
    f.answers.push_back(FakeIo::recorded("sig-7"));
    EXPECT_EQ(runReportCommand(c, f.io), 0);
    EXPECT_EQ(f.out, "signal sig-7 recorded: acted\n");
    ASSERT_EQ(f.sent.size(), 1u);
    EXPECT_EQ(f.sent[0].addresses(0), "203.0.113.7/32");
    EXPECT_EQ(f.timeouts[0], 5s);  // the agent's 3 s plus a margin for its answer
  }
  {
    FakeIo f;
    f.answers.push_back(FakeIo::failed(SignalResult::kRefused, "refused by the controller: x"));
    EXPECT_EQ(runReportCommand(c, f.io), 1);
    EXPECT_EQ(f.err, "refused by the controller: x\n");
  }
  {
    FakeIo f;
    f.answers.push_back(FakeIo::failed(SignalResult::kNotDelivered, "not delivered: timeout"));
    EXPECT_EQ(runReportCommand(c, f.io), 1);
  }
  {
    FakeIo f;
    f.answers.push_back(FakeIo::failed(SignalResult::kInvalid, "signal.rule: required"));
    EXPECT_EQ(runReportCommand(c, f.io), 2);
  }
  {
    FakeIo f;  // no agent listening
    EXPECT_EQ(runReportCommand(c, f.io), 1);
    EXPECT_EQ(f.err, "not delivered: no agent\n");
  }
  {
    FakeIo f;
    auto json = command({"signal", "--source", "cli", "--rule", "r", "--json"});
    EXPECT_EQ(runReportCommand(json, f.io), 1);
    EXPECT_EQ(f.out, "{\"error\":\"not delivered: no agent\",\"result\":\"not-delivered\"}\n");
  }
}

std::string sample(const std::string& name) {
  std::ifstream in(std::string(BULKHEAD_AGENT_TESTDATA) + "/wazuh/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

TEST(WazuhCommand, HandshakeThenSignal) {
  FakeIo f;
  f.input = {sample("v4_add_shellshock.json"), R"({"version":1,"command":"continue"})"};
  f.answers.push_back(FakeIo::recorded("sig-1"));
  EXPECT_EQ(runReportCommand(command({"wazuh-active-response"}), f.io), 0) << f.err;
  EXPECT_NE(f.out.find("\"command\":\"check_keys\""), std::string::npos);
  EXPECT_EQ(f.out.back(), '\n');
  ASSERT_EQ(f.out_before_read.size(), 1u);
  EXPECT_EQ(f.out_before_read[0], 1u);  // written while the answer was still unread
  ASSERT_EQ(f.sent.size(), 1u);
  EXPECT_EQ(f.sent[0].source(), v1::SIGNAL_SOURCE_WAZUH);
  EXPECT_EQ(f.sent[0].rule(), "31168");
  EXPECT_EQ(f.sent[0].payload_sha256(), sha256Hex(sample("v4_add_shellshock.json")));
}

TEST(WazuhCommand, AbortSendsNothing) {
  FakeIo f;
  f.input = {sample("v4_add_shellshock.json"), R"({"command":"abort"})"};
  EXPECT_EQ(runReportCommand(command({"wazuh-active-response"}), f.io), 0);
  EXPECT_TRUE(f.sent.empty());
  EXPECT_NE(f.err.find("abort"), std::string::npos);
}

TEST(WazuhCommand, DeleteSkipsTheHandshake) {
  FakeIo f;
  f.input = {sample("v4_delete_sshd.json")};
  f.answers.push_back(FakeIo::recorded("sig-2"));
  EXPECT_EQ(runReportCommand(command({"wazuh-active-response"}), f.io), 0) << f.err;
  EXPECT_EQ(f.out, "");
  ASSERT_EQ(f.sent.size(), 1u);
  EXPECT_TRUE(f.sent[0].resolved());
}

TEST(WazuhCommand, BadInput) {
  FakeIo f;
  f.input = {sample("v4_add_bad_srcip.json")};
  EXPECT_EQ(runReportCommand(command({"wazuh-active-response"}), f.io), 2);
  EXPECT_TRUE(f.sent.empty());
  FakeIo empty;
  EXPECT_EQ(runReportCommand(command({"wazuh-active-response"}), empty.io), 2);
  FakeIo no_answer;  // check_keys written, stdin ends
  no_answer.input = {sample("v4_add_shellshock.json")};
  EXPECT_EQ(runReportCommand(command({"wazuh-active-response"}), no_answer.io), 1);
  EXPECT_TRUE(no_answer.sent.empty());
}

TEST(SshguardCommand, KeepsGoingUntilEof) {
  FakeIo f;
  f.input = {"flush", "block 192.0.2.77 4 24", "bogus line", "block 198.51.100.1 4 32",
             "release 192.0.2.77 4 24"};
  f.answers.push_back(FakeIo::recorded("sig-1"));
  f.answers.push_back(FakeIo::failed(SignalResult::kNotDelivered, "not delivered: timeout"));
  f.answers.push_back(FakeIo::recorded("sig-3"));
  EXPECT_EQ(runReportCommand(command({"sshguard-backend", "--severity", "high"}), f.io), 0);
  ASSERT_EQ(f.sent.size(), 3u);  // flush and the bad line send nothing
  EXPECT_EQ(f.sent[0].source(), v1::SIGNAL_SOURCE_SSHGUARD);
  EXPECT_EQ(f.sent[0].rule(), "sshguard");
  EXPECT_EQ(f.sent[0].addresses(0), "192.0.2.0/24");
  EXPECT_EQ(f.sent[0].severity(), v1::SEVERITY_HIGH);
  EXPECT_FALSE(f.sent[0].resolved());
  EXPECT_EQ(f.sent[1].addresses(0), "198.51.100.1/32");
  EXPECT_TRUE(f.sent[2].resolved());
  EXPECT_NE(f.err.find("flush ignored"), std::string::npos);
  EXPECT_NE(f.err.find("ignored: sshguard line \"bogus line\""), std::string::npos);
  EXPECT_NE(f.err.find("block 198.51.100.1/32: not delivered: timeout"), std::string::npos)
      << f.err;
  EXPECT_NE(f.err.find("1 signals not recorded"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::agent
