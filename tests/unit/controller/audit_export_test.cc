// Audit export through the real server, checked with the README's stock-tools recipe (openssl
// and python3), and VerifyAudit on a keyed table: a middle row rewritten, rows deleted at the
// tail against an export's head checkpoint.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <tuple>

#include "controller/service/tenants.h"
#include "controller/store/audit_key.h"
#include "evidence/hash.h"
#include "evidence/report_manifest.h"
#include "evidence/signing.h"
#include "tests/unit/controller/server_harness.h"

namespace bulkhead::controller {
namespace {

using namespace bulkhead::controller::testing;
namespace v1 = bulkhead::v1;

const std::string kKey(32, '\x5a');

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void writeFile(const fs::path& p, const std::string& data) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
}

// The shell block under `marker` in README.md.
std::string readmeRecipe(const std::string& marker_text = "<!-- audit-export-recipe -->") {
  std::string readme = readFile(BULKHEAD_README);
  auto marker = readme.find(marker_text);
  EXPECT_NE(marker, std::string::npos);
  auto start = readme.find("```sh\n", marker);
  auto end = readme.find("\n```\n", start);
  EXPECT_NE(start, std::string::npos);
  EXPECT_NE(end, std::string::npos);
  start += 6;
  return readme.substr(start, end - start + 1);
}

class AuditExportTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    // The same server on a keyed store.
    server_.reset();
    store_.reset();
    auto s = SqliteStore::create(dir_ / "controller.db", {.audit_key = kKey});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    startServer();
    out_ = dir_ / "export";
    fs::create_directories(out_);
    writeFile(out_ / "ca.crt", controller_id_.ca_pem);
    writeFile(out_ / "recipe.sh", readmeRecipe());
  }
  void configure(ServerOptions& o) override {
    auto signer = evidence::Signer::fromPem(controller_id_.key_pem, controller_id_.cert_pem);
    ASSERT_TRUE(signer.ok()) << signer.status();
    o.audit_signer = *std::move(signer);
  }
  struct Export {
    grpc::Status status;
    std::string text, signature, cert;
  };
  // As operator `name` (certificate role `role`), in `tenant` ("": none named).
  Export exportAudit(int64_t since = 0, const std::string& name = "vera", Role role = Role::kViewer,
                     const std::string& tenant = "") {
    auto stub = op(role, name);
    grpc::ClientContext ctx;
    deadline(&ctx);
    if (!tenant.empty()) ctx.AddMetadata("bulkhead-tenant", tenant);
    v1::ExportAuditRequest req;
    req.set_since_id(since);
    auto reader = stub->ExportAudit(&ctx, req);
    Export e;
    v1::AuditExportChunk chunk;
    while (reader->Read(&chunk)) {
      e.text += chunk.data();
      if (!chunk.signature().empty()) e.signature = chunk.signature();
      if (!chunk.certificate_pem().empty()) e.cert = chunk.certificate_pem();
    }
    e.status = reader->Finish();
    return e;
  }
  void writeExport(const std::string& text, const std::string& signature, const std::string& cert) {
    writeFile(out_ / "audit.jsonl", text);
    writeFile(out_ / "audit.jsonl.sig", signature);
    writeFile(out_ / "audit.jsonl.crt", cert);
  }
  // Runs the README's recipe in out_; its exit code, output in out_/recipe.out.
  int runRecipe() {
    std::string cmd = fmt::format("cd '{}' && bash -e recipe.sh > recipe.out 2>&1", out_.string());
    int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  std::string recipeOutput() { return readFile(out_ / "recipe.out"); }
  v1::VerifyAuditResponse verify(int64_t checkpoint_id = 0, const std::string& hash = "") {
    auto stub = op(Role::kViewer, "vera");
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::VerifyAuditRequest req;
    req.set_checkpoint_id(checkpoint_id);
    req.set_checkpoint_hash(hash);
    v1::VerifyAuditResponse resp;
    auto s = stub->VerifyAudit(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  void someRows() {
    for (int i = 0; i < 3; ++i) hosts();
    // Text a JSON encoder must escape, and bytes that are not UTF-8 (exported as _hex).
    AuditEntry odd{.at_unix_ms = 1700000000000,
                   .operator_name = "rita",
                   .action = "kill-process",
                   .target = "web-03",
                   .reason = "INC-42 \"quoted\" \\ é ✓",
                   .outcome = "accepted",
                   .detail = std::string("cmdline \xff\xfe tail")};
    ASSERT_TRUE(store_->appendAudit(odd).ok());
    hosts();
  }
  // The rows `name` lists in `tenant`, or the call's error.
  absl::StatusOr<std::vector<v1::AuditRecord>> listAs(const std::string& name, Role role,
                                                      const std::string& tenant) {
    auto stub = op(role, name);
    grpc::ClientContext ctx;
    deadline(&ctx);
    if (!tenant.empty()) ctx.AddMetadata("bulkhead-tenant", tenant);
    v1::ListAuditRequest req;
    req.set_limit(1000);
    v1::ListAuditResponse resp;
    if (auto s = stub->ListAudit(&ctx, req, &resp); !s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    }
    return std::vector<v1::AuditRecord>(resp.records().begin(), resp.records().end());
  }
  // Tenants acme and beta, carol a viewer of acme's every host, and rows of each tenant and
  // of calls across tenants (by root and by carol), interleaved.
  void twoTenants() {
    for (const char* name : {"acme", "beta"}) {
      v1::Tenant t;
      t.set_name(name);
      ASSERT_TRUE(store_
                      ->addTenant(t, AuditEntry{.operator_name = "root",
                                                .action = "tenant-create",
                                                .target = name,
                                                .outcome = "ok"})
                      .ok());
    }
    auto binding = makeRoleBinding("carol", "acme", v1::OPERATOR_ROLE_VIEWER, "", "root",
                                   "customer staff", 1700000000000);
    ASSERT_TRUE(binding.ok()) << binding.status();
    ASSERT_TRUE(store_
                    ->addRoleBinding(*binding, AuditEntry{.operator_name = "root",
                                                          .action = "access-grant",
                                                          .outcome = "ok"})
                    .ok());
    for (const auto& [who, tenant, target] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"ann@acme", "acme", "acme-web"},
             {"bea@beta", "beta", "beta-web"},
             {"ann@acme", "acme", "acme-db"},
             {"root", "*", "beta-web,acme-web"},
             {"carol", "*", "acme-web"},
             {"bea@beta", "beta", "beta-db"}}) {
      ASSERT_TRUE(store_
                      ->appendAudit(AuditEntry{.at_unix_ms = 1700000000000,
                                               .operator_name = who,
                                               .action = "isolate",
                                               .target = target,
                                               .reason = "INC-7",
                                               .outcome = "accepted",
                                               .tenant = tenant})
                      .ok());
    }
  }
  fs::path out_;
};

TEST_F(AuditExportTest, TheReadmeRecipeChecksAnExportAndCatchesEdits) {
  someRows();
  Export e = exportAudit();
  ASSERT_TRUE(e.status.ok()) << e.status.error_message();
  ASSERT_FALSE(e.signature.empty());
  EXPECT_EQ(e.cert, controller_id_.cert_pem);
  EXPECT_NE(e.text.find("\"detail_hex\""), std::string::npos);
  writeExport(e.text, e.signature, e.cert);
  ASSERT_EQ(runRecipe(), 0) << recipeOutput();
  EXPECT_NE(recipeOutput().find("Verified OK"), std::string::npos) << recipeOutput();
  EXPECT_NE(recipeOutput().find("chain ok: 5 rows"), std::string::npos) << recipeOutput();

  // One row edited: the signature no longer matches.
  std::string edited = e.text;
  auto at = edited.find("\"target\":\"web-03\"");
  ASSERT_NE(at, std::string::npos);
  edited.replace(at, 17, "\"target\":\"web-04\"");
  writeExport(edited, e.signature, e.cert);
  EXPECT_NE(runRecipe(), 0) << recipeOutput();
  EXPECT_NE(recipeOutput().find("Verification failure"), std::string::npos) << recipeOutput();

  // Edited and signed again (by someone holding the controller's key): the recomputed chain
  // names the row.
  auto signer = evidence::Signer::fromPem(controller_id_.key_pem, controller_id_.cert_pem);
  ASSERT_TRUE(signer.ok());
  writeExport(edited, *signer->sign(edited), e.cert);
  EXPECT_NE(runRecipe(), 0) << recipeOutput();
  EXPECT_NE(recipeOutput().find("row 4: altered"), std::string::npos) << recipeOutput();

  // The last row cut from the file (and signed again): the head no longer matches.
  std::string cut = e.text;
  auto head_line = cut.find("{\"last_hash\"");
  ASSERT_NE(head_line, std::string::npos);
  auto last_row = cut.rfind('\n', head_line - 2) + 1;
  cut.erase(last_row, head_line - last_row);
  writeExport(cut, *signer->sign(cut), e.cert);
  EXPECT_NE(runRecipe(), 0) << recipeOutput();
  EXPECT_NE(recipeOutput().find("head does not match"), std::string::npos) << recipeOutput();
}

TEST_F(AuditExportTest, ATenantReadsAndExportsItsOwnRowsOnlyAndTheRecipeChecksThem) {
  twoTenants();
  // Carol (acme's viewer) lists acme's rows; never beta's, nor the install's, nor root's call
  // across tenants (which names a beta host). Asking for every tenant of hers, she also sees
  // her own call across tenants.
  auto listed = listAs("carol", Role::kNone, "");
  ASSERT_TRUE(listed.ok()) << listed.status();
  std::vector<std::string> seen;
  for (const auto& r : *listed) seen.push_back(r.operator_() + " " + r.target() + " " + r.tenant());
  EXPECT_EQ(seen, (std::vector<std::string>{"ann@acme acme-web acme", "ann@acme acme-db acme"}));
  listed = listAs("carol", Role::kNone, "*");
  ASSERT_TRUE(listed.ok()) << listed.status();
  seen.clear();
  for (const auto& r : *listed) seen.push_back(r.operator_() + " " + r.target() + " " + r.tenant());
  EXPECT_EQ(seen, (std::vector<std::string>{"ann@acme acme-web acme", "ann@acme acme-db acme",
                                            "carol acme-web *", "carol limit=1000 acme"}))
      << "her first listing is a row of acme, too";

  Export e = exportAudit(0, "carol", Role::kNone);
  ASSERT_TRUE(e.status.ok()) << e.status.error_message();
  EXPECT_NE(e.text.find("\"tenants\":[\"acme\"]"), std::string::npos) << e.text;
  EXPECT_EQ(e.text.find("beta"), std::string::npos) << e.text;
  EXPECT_EQ(e.text.find("\"operator\":\"root\""), std::string::npos) << e.text;
  // Acme's rows are not consecutive ids: each row's hash still checks.
  writeExport(e.text, e.signature, e.cert);
  ASSERT_EQ(runRecipe(), 0) << recipeOutput();
  EXPECT_NE(recipeOutput().find("chain ok: 4 rows"), std::string::npos) << recipeOutput();
  // The tenant is hashed: the same row claimed for another tenant (and signed again) fails.
  std::string moved = e.text;
  auto at = moved.find("\"tenant\":\"acme\"");
  ASSERT_NE(at, std::string::npos);
  moved.replace(at, 15, "\"tenant\":\"beta\"");
  auto signer = evidence::Signer::fromPem(controller_id_.key_pem, controller_id_.cert_pem);
  ASSERT_TRUE(signer.ok());
  writeExport(moved, *signer->sign(moved), e.cert);
  EXPECT_NE(runRecipe(), 0) << recipeOutput();
  EXPECT_NE(recipeOutput().find("altered"), std::string::npos) << recipeOutput();

  // The install's admin names the tenant it reads, or every one with "*".
  auto in_beta = listAs("root", Role::kAdmin, "beta");
  ASSERT_TRUE(in_beta.ok()) << in_beta.status();
  for (const auto& r : *in_beta) EXPECT_EQ(r.tenant(), "beta") << r.DebugString();
  EXPECT_EQ(in_beta->size(), 2u);
  auto everything = listAs("root", Role::kAdmin, "*");
  ASSERT_TRUE(everything.ok()) << everything.status();
  auto all_rows = store_->listAudit(0);
  ASSERT_TRUE(all_rows.ok());
  EXPECT_EQ(everything->size(), all_rows->size() - 1);  // all but the row of this very call
  auto no_choice = listAs("root", Role::kAdmin, "");
  EXPECT_TRUE(absl::IsFailedPrecondition(no_choice.status())) << no_choice.status();

  // The whole chain, every tenant's rows in it, still verifies; a row's tenant changed in the
  // table does not.
  EXPECT_TRUE(verify().ok());
  ASSERT_TRUE(
      store_->execForTest("UPDATE audit SET tenant = 'default' WHERE tenant = 'beta'").ok());
  auto v = verify();
  EXPECT_FALSE(v.ok());
  EXPECT_NE(v.problem().find("hash"), std::string::npos) << v.problem();
}

TEST_F(AuditExportTest, ExportSinceAnIdStartsThere) {
  someRows();
  Export e = exportAudit(3);
  ASSERT_TRUE(e.status.ok()) << e.status.error_message();
  EXPECT_EQ(e.text.find("\"id\":1,"), std::string::npos);
  EXPECT_NE(e.text.find("\"id\":3,"), std::string::npos);
  EXPECT_NE(e.text.find("\"since_id\":3"), std::string::npos);
  writeExport(e.text, e.signature, e.cert);
  ASSERT_EQ(runRecipe(), 0) << recipeOutput();
  Export bad = exportAudit(-1);
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.status.error_message().find("since_id"), std::string::npos);
}

TEST_F(AuditExportTest, VerifyAuditDetectsARewrittenRowAndATruncatedTail) {
  someRows();
  Export e = exportAudit();
  ASSERT_TRUE(e.status.ok());
  // The export's head: the last row it holds.
  auto rows = store_->listAudit(0);
  ASSERT_TRUE(rows.ok());
  const AuditEntry& exported_last = (*rows)[4];
  EXPECT_NE(e.text.find(fmt::format("\"last_hash\":\"{}\",\"last_id\":5", exported_last.hash)),
            std::string::npos)
      << e.text;
  auto v = verify(5, exported_last.hash);
  EXPECT_TRUE(v.ok()) << v.problem();
  EXPECT_TRUE(v.keyed());

  // Rows deleted at the tail: still a valid chain, but row 5 is gone.
  ASSERT_TRUE(store_->execForTest("DELETE FROM audit WHERE id >= 4").ok());
  v = verify();
  EXPECT_TRUE(v.ok()) << v.problem();
  v = verify(5, exported_last.hash);
  EXPECT_FALSE(v.ok());
  EXPECT_NE(v.problem().find("rows missing at the tail"), std::string::npos) << v.problem();

  // A middle row edited with every later hash recomputed: its MAC fails.
  rows = store_->listAudit(0);
  std::string prev;
  for (auto r : *rows) {
    if (r.id == 2) r.outcome = "denied";
    if (r.id >= 2) {
      r.prev_hash = prev;
      r.hash = auditRowHash(r);
      ASSERT_TRUE(store_
                      ->execForTest(fmt::format("UPDATE audit SET outcome = '{}', prev_hash = "
                                                "'{}', hash = '{}' WHERE id = {}",
                                                r.outcome, r.prev_hash, r.hash, r.id))
                      .ok());
    }
    prev = r.hash;
  }
  v = verify();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.first_bad_id(), 2);
  EXPECT_NE(v.problem().find("MAC does not match"), std::string::npos) << v.problem();
}

// An incident's report, as `bulkhead incident report` asks for it: the file, and the manifest
// the controller signed. The README's recipe checks it with stock tools, and catches an edit.
TEST_F(AuditExportTest, AnIncidentReportIsSignedAndTheReadmeRecipeChecksIt) {
  auto stub = op(Role::kResponder, "alice");
  {
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::OpenIncidentRequest req;
    req.set_incident_id("INC-42");
    req.set_title("ransomware on web-01");
    v1::Incident resp;
    auto st = stub->OpenIncident(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  {
    grpc::ClientContext ctx;
    deadline(&ctx);
    ctx.AddMetadata("bulkhead-incident", "INC-42");
    v1::ListHostsRequest req;
    v1::ListHostsResponse resp;
    ASSERT_TRUE(stub->ListHosts(&ctx, req, &resp).ok());
  }
  struct Report {
    grpc::Status status;
    std::string file, manifest, signature, cert;
  };
  auto report = [&](v1::IncidentReportFormat format, const std::string& who, Role role) {
    auto s = op(role, who);
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::IncidentReportRequest req;
    req.set_incident_id("INC-42");
    req.set_format(format);
    auto reader = s->ReportIncident(&ctx, req);
    Report r;
    v1::IncidentReportChunk chunk;
    while (reader->Read(&chunk)) {
      r.file += chunk.data();
      if (!chunk.manifest().empty()) r.manifest = chunk.manifest();
      if (!chunk.signature().empty()) r.signature = chunk.signature();
      if (!chunk.certificate_pem().empty()) r.cert = chunk.certificate_pem();
    }
    r.status = reader->Finish();
    return r;
  };

  Report json_report = report(v1::INCIDENT_REPORT_FORMAT_JSON, "vera", Role::kViewer);
  ASSERT_TRUE(json_report.status.ok()) << json_report.status.error_message();
  auto doc = nlohmann::json::parse(json_report.file);
  EXPECT_EQ(doc["incident"]["id"], "INC-42");
  std::vector<std::string> actions;
  for (const auto& r : doc["timeline"]) actions.push_back(r["action"]);
  EXPECT_EQ(actions, (std::vector<std::string>{"incident-open", "hosts"}));
  EXPECT_TRUE(
      evidence::checkSignature(json_report.cert, json_report.manifest, json_report.signature).ok());
  EXPECT_TRUE(evidence::checkControllerSigner(json_report.cert, controller_id_.ca_pem).ok());
  auto manifest = evidence::parseReportManifest(json_report.manifest);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->sha256, evidence::sha256Hex(json_report.file));
  EXPECT_EQ(manifest->format, "json");
  EXPECT_EQ(manifest->incident, "INC-42");

  // The recipe, on the HTML report saved under the README's name.
  Report html = report(v1::INCIDENT_REPORT_FORMAT_HTML, "vera", Role::kViewer);
  ASSERT_TRUE(html.status.ok()) << html.status.error_message();
  EXPECT_TRUE(html.file.starts_with("<!DOCTYPE html>"));
  writeFile(out_ / "recipe.sh", readmeRecipe("<!-- incident-report-recipe -->"));
  writeFile(out_ / "INC-42.pdf", html.file);
  writeFile(out_ / "INC-42.pdf.manifest", html.manifest);
  writeFile(out_ / "INC-42.pdf.sig", html.signature);
  writeFile(out_ / "INC-42.pdf.crt", html.cert);
  EXPECT_EQ(runRecipe(), 0) << recipeOutput();
  EXPECT_NE(recipeOutput().find("the report matches its signed manifest"), std::string::npos)
      << recipeOutput();
  std::string edited = html.file;
  edited.replace(edited.find("INC-42"), 6, "INC-43");
  writeFile(out_ / "INC-42.pdf", edited);
  EXPECT_NE(runRecipe(), 0) << recipeOutput();

  // Audited with the file's hash; a bad format is refused naming it, and audited too.
  auto rows = store_->listAudit(100);
  ASSERT_TRUE(rows.ok());
  int reports = 0;
  for (const auto& r : *rows) {
    if (r.action != "incident-report") continue;
    ++reports;
    EXPECT_EQ(r.operator_name, "vera");
  }
  EXPECT_EQ(reports, 2);
  Report bad = report(v1::INCIDENT_REPORT_FORMAT_UNSPECIFIED, "vera", Role::kViewer);
  EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad.status.error_message(), "format: required (html, pdf, json or md)");
  EXPECT_TRUE(bad.file.empty());
  // Without a role, no report (refused like every other call).
  Report none = report(v1::INCIDENT_REPORT_FORMAT_HTML, "nobody", Role::kNone);
  EXPECT_EQ(none.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << none.status.error_message();
}

}  // namespace
}  // namespace bulkhead::controller
