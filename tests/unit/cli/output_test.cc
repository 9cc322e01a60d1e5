// Text output: what the controller or an agent sent is shown escaped, one row per line.
#include "cli/output.h"

#include <fmt/format.h>
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

TEST(JsonContract, NumbersAreNumbersEnumsAreTextAndEveryFieldIsPresent) {
  v1::ContainmentResponse resp;
  auto* o = resp.add_outcomes();
  o->set_host_id("web-01");
  o->set_state(v1::HostOutcome::STATE_DRY_RUN);
  o->set_generation(9'007'199'254'740'993ULL);  // beyond a double's exact integers
  nlohmann::json doc = contractJson(resp);
  const nlohmann::json& out = doc["outcomes"][0];
  EXPECT_EQ(out["state"], "dry-run");
  ASSERT_TRUE(out["generation"].is_number_unsigned()) << out.dump();
  EXPECT_EQ(out["generation"].get<uint64_t>(), 9'007'199'254'740'993ULL);
  EXPECT_EQ(out["error"], "");           // defaults are printed
  EXPECT_TRUE(out["report"].is_null());  // an unset message is null
  EXPECT_TRUE(out["exemption_sets"].is_array());
  EXPECT_TRUE(doc["warnings"].is_array());
  // Printed, the big number keeps every digit.
  std::ostringstream text;
  printJson(text, resp);
  EXPECT_NE(text.str().find("9007199254740993"), std::string::npos) << text.str();
}

TEST(JsonContract, EnumValuesAreSpeltAsInTheTextOutput) {
  EXPECT_EQ(enumText(v1::PROTOCOL_TCP), "tcp");
  EXPECT_EQ(enumText(v1::PROTOCOL_ANY), "any");
  EXPECT_EQ(enumText(v1::DIRECTION_BOTH), "both");
  EXPECT_EQ(enumText(v1::HostOutcome::STATE_ENFORCED), "enforced");
  EXPECT_EQ(enumText(v1::HostOutcome::STATE_FAILED), "failed");
  EXPECT_EQ(enumText(v1::HostOutcome::STATE_DRY_RUN), "dry-run");
  EXPECT_EQ(enumText(static_cast<v1::Protocol>(77)), "unknown");
}

TEST(JsonContract, AnEmbeddedJsonDocumentIsParsed) {
  // CommandResult.result_json (deprecated) is one: set through reflection.
  v1::CommandResult result;
  const auto* field = result.GetDescriptor()->FindFieldByName("result_json");
  ASSERT_NE(field, nullptr);
  result.GetReflection()->SetString(&result, field, R"({"sessions":[{"id":"3","leader_pid":42}]})");
  nlohmann::json doc = contractJson(result);
  EXPECT_FALSE(doc.contains("result_json"));
  EXPECT_EQ(doc["result"]["sessions"][0]["leader_pid"], 42);
  result.GetReflection()->SetString(&result, field, "not json {");
  EXPECT_TRUE(contractJson(result)["result"].is_null());
}

TEST(JsonContract, AKillProcessResultIsTypedAndHostIsAlwaysHostId) {
  v1::HostActionResponse resp;
  resp.set_host_id("web-01");
  resp.set_ok(true);
  v1::KillProcessesResult& k = *resp.mutable_kill_processes();
  k.set_scan_rounds(2);
  k.set_frozen(true);
  k.set_freeze_method(v1::FREEZE_METHOD_SIGSTOP);
  k.set_connections_cut(3);
  v1::ProcessEntry& killed = *k.add_killed();
  killed.set_pid(4242);
  killed.set_uid(1001);
  killed.set_user("mallory");
  killed.set_cmdline("nc -l 4444");
  v1::ProcessRecord& record = *k.add_records();
  record.set_pid(4242);
  record.set_start_unix(1764780000);
  v1::SocketRecord& sock = *record.add_sockets();
  sock.set_inode(uint64_t{1} << 40);
  sock.set_kind(v1::SOCKET_KIND_TCP);
  sock.set_state(1);
  nlohmann::json doc = contractJson(resp);
  EXPECT_EQ(doc["host_id"], "web-01");
  EXPECT_FALSE(doc.contains("host"));
  EXPECT_FALSE(doc.contains("result"));
  EXPECT_FALSE(doc.contains("result_json"));
  EXPECT_FALSE(doc.contains("list_sessions"));   // only the oneof member that is set
  const nlohmann::json& r = doc["kill_processes"];
  ASSERT_TRUE(r.is_object()) << doc.dump();
  EXPECT_TRUE(r["scan_rounds"].is_number_unsigned());
  EXPECT_EQ(r["scan_rounds"], 2);
  EXPECT_EQ(r["connections_cut"], 3);
  EXPECT_EQ(r["freeze_method"], "sigstop");
  EXPECT_TRUE(r["killed"][0]["pid"].is_number_integer());
  EXPECT_EQ(r["killed"][0]["pid"], 4242);
  EXPECT_EQ(r["killed"][0]["uid"], 1001);
  EXPECT_EQ(r["killed"][0]["why"], "");
  EXPECT_EQ(r["records"][0]["start_unix"], 1764780000);
  EXPECT_EQ(r["records"][0]["sockets"][0]["inode"], uint64_t{1} << 40);
  EXPECT_EQ(r["records"][0]["sockets"][0]["kind"], "tcp");
  EXPECT_EQ(r["still_alive"], nlohmann::json::array());   // every field is present
}

TEST(JsonContract, OnlyTheSetMemberOfAOneofAppearsAndBytesAreBase64) {
  v1::CaptureEvent event;
  event.mutable_done()->set_evidence_id("ab");
  nlohmann::json doc = contractJson(event);
  EXPECT_TRUE(doc.contains("done"));
  EXPECT_FALSE(doc.contains("progress"));
  v1::AuditExportChunk chunk;
  chunk.set_data(std::string("\x00\xff", 2));
  EXPECT_EQ(contractJson(chunk)["data"], "AP8=");
}

TEST(JsonContract, AnUnsetOptionalFieldIsNullASetOneItsValue) {
  v1::EvidenceSummary::Finding finding;
  finding.set_kind("hidden_process");
  finding.set_pid(0);
  finding.set_comm_listed(true);
  nlohmann::json doc = contractJson(finding);
  EXPECT_EQ(doc["pid"], 0);            // set, even to 0
  EXPECT_TRUE(doc["comm"].is_null());  // unset: null, not ""
  EXPECT_TRUE(doc["exe"].is_null());
  EXPECT_EQ(doc["comm_listed"], true);
  EXPECT_EQ(doc["exe_listed"], false);
  EXPECT_EQ(doc["detail"], "");  // a plain proto3 string: its value, "" when unset

  v1::ShowEvidenceResponse resp;
  resp.mutable_summary()->set_host_id("web-03");
  doc = contractJson(resp);
  EXPECT_EQ(doc["summary"]["host_id"], "web-03");
  EXPECT_TRUE(doc["summary"]["capture_id"].is_null());
  EXPECT_TRUE(doc["summary"]["collected_at_unix_ms"].is_null());
  EXPECT_EQ(doc["summary"]["kernel_tainted"], 0);
}

// printJson writes a message's top-level lists element by element (a response for 10,000
// hosts is never one JSON tree); the bytes must be those of the whole document dumped at once.
TEST(JsonContract, AMessagePrintedListByListIsTheWholeDocumentByteForByte) {
  auto whole = [](const google::protobuf::Message& m) {
    std::ostringstream out;
    printJson(out, contractJson(m));
    return out.str();
  };
  auto streamed = [](const google::protobuf::Message& m) {
    std::ostringstream out;
    printJson(out, m);
    return out.str();
  };
  v1::ContainmentResponse resp;
  EXPECT_EQ(streamed(resp), whole(resp));  // empty lists: "[]", not streamed
  for (int i = 0; i < 3; ++i) {
    auto* o = resp.add_outcomes();
    o->set_host_id(fmt::format("web-0{}", i));
    o->set_state(i == 1 ? v1::HostOutcome::STATE_FAILED : v1::HostOutcome::STATE_ENFORCED);
    o->set_error(i == 1 ? "line one\nline \"two\"\t\xff" : "");
    o->add_exemption_sets("db");
    o->add_exemption_sets("dns");
    if (i != 2) o->mutable_report()->set_ruleset_hash("abc");
    o->mutable_report()->add_steps()->set_duration_us(17);
  }
  resp.add_warnings("a warning\nwith a break");
  const std::string text = streamed(resp);
  EXPECT_EQ(text, whole(resp));
  EXPECT_NE(text.find("\\n"), std::string::npos);  // the error's line break, escaped
  // A message whose list of messages sits beside a oneof, a map and nested lists.
  v1::HostActionResponse action;
  action.set_host_id("web-01");
  v1::KillProcessesResult& k = *action.mutable_kill_processes();
  k.add_killed()->set_pid(1);
  k.add_records()->add_sockets()->set_inode(7);
  EXPECT_EQ(streamed(action), whole(action));
  v1::ListHostsResponse hosts;
  for (int i = 0; i < 2; ++i) {
    auto* h = hosts.add_hosts();
    h->set_host_id(fmt::format("h{}", i));
    (*h->mutable_labels())["role"] = "web";
  }
  EXPECT_EQ(streamed(hosts), whole(hosts));
}

TEST(JsonContract, InvalidUtf8FromAHostIsReplacedNotFatal) {
  v1::HostActionResponse resp;
  resp.set_host_id("web-01");
  resp.set_error(std::string("bad \xff byte"));
  std::ostringstream text;
  printJson(text, resp);
  auto parsed = nlohmann::json::parse(text.str(), nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << text.str();
  EXPECT_EQ(parsed["error"], "bad \xef\xbf\xbd byte");
}

}  // namespace
}  // namespace bulkhead::cli
