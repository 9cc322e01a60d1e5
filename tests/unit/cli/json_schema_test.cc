// The `--json` contract's schemas (cli/schemas/) match what the CLI prints and cover every
// command. The lab tests validate every real `--json` output against them (tests/lab/fleet.py).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "bulkhead/v1/operator.pb.h"
#include "cli/cli.h"
#include "cli/output.h"

namespace bulkhead::cli {
namespace {

namespace fs = std::filesystem;

const fs::path kSchemaDir = fs::path(BULKHEAD_SOURCE_DIR) / "cli" / "schemas";

// Every message a command prints (the command schemas refer to these).
std::vector<const google::protobuf::Descriptor*> printedMessages() {
  std::vector<const google::protobuf::Descriptor*> out = {v1::ListHostsResponse::descriptor(),
                                                          v1::HostStatus::descriptor(),
                                                          v1::ContainmentResponse::descriptor(),
                                                          v1::ListBlocksResponse::descriptor(),
                                                          v1::HostActionResponse::descriptor(),
                                                          v1::ListEvidenceResponse::descriptor(),
                                                          v1::EvidenceRecord::descriptor(),
                                                          v1::VerifyEvidenceResponse::descriptor(),
                                                          v1::ShowEvidenceResponse::descriptor(),
                                                          v1::ListAuditResponse::descriptor(),
                                                          v1::VerifyAuditResponse::descriptor(),
                                                          v1::SubmitSignalResponse::descriptor(),
                                                          v1::ListSignalsResponse::descriptor(),
                                                          v1::ListApprovalsResponse::descriptor(),
                                                          v1::Approval::descriptor()};
  // `integrations`, `integrations create`, `integrations revoke`.
  for (const auto* d :
       {v1::ListIntegrationsResponse::descriptor(), v1::CreateIntegrationResponse::descriptor(),
        v1::Integration::descriptor()}) {
    out.push_back(d);
  }
  // `tokens`, `tokens create`, `tokens revoke`.
  for (const auto* d : {v1::ListJoinTokensResponse::descriptor(),
                        v1::CreateJoinTokenResponse::descriptor(), v1::JoinToken::descriptor()}) {
    out.push_back(d);
  }
  // `renew` (`enroll` prints the RoleBinding below).
  out.push_back(v1::RenewOperatorCertificateResponse::descriptor());
  // `tenants`, `tenants create`, `access`, `access grant`, `access revoke`.
  for (const auto* d : {v1::ListTenantsResponse::descriptor(), v1::Tenant::descriptor(),
                        v1::ListAccessResponse::descriptor(), v1::RoleBinding::descriptor()}) {
    out.push_back(d);
  }
  // `incident open|note|close` (the incident), `incident list`, `incident show`.
  for (const auto* d : {v1::Incident::descriptor(), v1::ListIncidentsResponse::descriptor(),
                        v1::ShowIncidentResponse::descriptor()}) {
    out.push_back(d);
  }
  // `notify channels`, `notify test`.
  for (const auto* d :
       {v1::ListNotifyChannelsResponse::descriptor(), v1::TestNotifyResponse::descriptor()}) {
    out.push_back(d);
  }
  return out;
}

std::string schemaFileOf(const std::string& command) {
  std::string name = command;
  for (char& c : name) c = c == ' ' ? '-' : c;
  return name + ".schema.json";
}

TEST(JsonSchemas, MessageDefinitionsMatchWhatTheCliPrints) {
  nlohmann::json want = {{"$schema", "https://json-schema.org/draft/2020-12/schema"},
                         {"$id", "https://bulkhead.example/schemas/cli/messages.schema.json"},
                         {"title", "bulkhead --json: the messages commands print"},
                         {"$defs", contractSchemaDefs(printedMessages())}};
  const fs::path path = kSchemaDir / "messages.schema.json";
  if (std::getenv("BULKHEAD_UPDATE_SCHEMAS") != nullptr) {
    std::ofstream(path) << want.dump(2) << "\n";
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  nlohmann::json have = nlohmann::json::parse(in, nullptr, false);
  EXPECT_EQ(have, want) << path
                        << " is out of date: the proto messages changed. Rewrite it with "
                           "BULKHEAD_UPDATE_SCHEMAS=1 cli_test --gtest_filter=JsonSchemas.*, "
                           "and review the difference: it changes the --json contract";
}

TEST(JsonSchemas, EveryCommandHasASchemaAndEverySchemaACommand) {
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(kSchemaDir)) files.insert(e.path().filename());
  files.erase("messages.schema.json");
  for (const auto& [name, info] : commands()) {
    if (name == "evidence") continue;  // usage only: the subcommands print
    EXPECT_EQ(files.erase(schemaFileOf(name)), 1U) << "no schema for `" << name << " --json`";
  }
  EXPECT_TRUE(files.empty()) << "schemas for no command: " << *files.begin();
}

TEST(JsonSchemas, EveryCommandSchemaIsJsonAndNamesItself) {
  for (const auto& [name, info] : commands()) {
    if (name == "evidence") continue;
    std::ifstream in(kSchemaDir / schemaFileOf(name));
    nlohmann::json doc = nlohmann::json::parse(in, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << schemaFileOf(name);
    EXPECT_EQ(doc.value("$id", ""), "https://bulkhead.example/schemas/cli/" + schemaFileOf(name));
    EXPECT_EQ(doc.value("title", ""), "bulkhead " + name + " --json");
  }
}

}  // namespace
}  // namespace bulkhead::cli
