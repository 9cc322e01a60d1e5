// Incidents (controller/service/incidents.h) on a real SQLite store: opening, listing, the
// timeline of the calls made with `--incident`, notes, closing, and the refusals. No gRPC.
#include "controller/service/incidents.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "common/format.h"
#include "common/pki/pki.h"
#include "controller/service/audit.h"
#include "controller/store/sqlite_store.h"
#include "evidence/hash.h"
#include "evidence/report_manifest.h"
#include "tests/unit/controller/fake_clock.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

constexpr char kBundleId[] = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

// The install's single team (tenant default, every host).
Caller responder(std::string name = "alice") {
  return Caller{.audit_name = std::move(name), .is_operator = true, .role = Role::kResponder};
}

// A responder (or `role`) of tenant acme alone, on every host of it.
Caller acmeOperator(Role role = Role::kResponder) {
  return Caller{.audit_name = "ann",
                .is_operator = true,
                .role = Role::kNone,
                .grants = {Grant{.tenant = "acme", .role = role}},
                .tenants = {"acme"}};
}

v1::OpenIncidentRequest openRequest(const std::string& id,
                                    const std::string& title = "ransomware") {
  v1::OpenIncidentRequest req;
  req.set_incident_id(id);
  req.set_title(title);
  return req;
}

class IncidentServiceTest : public ::testing::Test {
 protected:
  IncidentServiceTest() {
    char tmpl[] = "/tmp/bh-incidents-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto store = SqliteStore::create(dir_ / "controller.db");
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    service_ = std::make_unique<IncidentService>(clock_, *store_);
  }
  ~IncidentServiceTest() override {
    service_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // `caller` as a front door hands it over for a call made with `--incident id`.
  Caller with(Caller caller, const std::string& id) {
    service_->scopeCaller(caller, id);
    return caller;
  }
  // An action's audit row, as every service writes it for `caller`.
  void act(const Caller& caller, const std::string& action, const std::string& target) {
    ASSERT_TRUE(recordCall(*store_, clock_, auditActor(caller), action, target, "INC work",
                           absl::OkStatus())
                    .ok());
  }
  std::vector<AuditEntry> audit() {
    auto rows = store_->listAudit(1000);
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.ok() ? *rows : std::vector<AuditEntry>{};
  }

  FakeClock clock_;
  std::filesystem::path dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<IncidentService> service_;
};

TEST_F(IncidentServiceTest, TheTimelineHoldsEveryCallOfTheIncidentAndNothingElse) {
  auto opened = service_->open(responder(), openRequest("INC-42"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->tenant(), "default");
  EXPECT_EQ(opened->state(), v1::INCIDENT_STATE_OPEN);
  EXPECT_EQ(opened->severity(), v1::INCIDENT_SEVERITY_MEDIUM);
  EXPECT_EQ(opened->detected_unix_ms(), clock_.nowUnixMs());
  ASSERT_TRUE(service_->open(responder("bob"), openRequest("INC-43", "phishing")).ok());

  clock_.advance(std::chrono::minutes(5));
  const Caller in42 = with(responder(), "INC-42");
  ASSERT_TRUE(in42.refusal.ok()) << in42.refusal;
  EXPECT_EQ(in42.incident, "INC-42");
  act(in42, "isolate", "web-01");
  act(responder(), "isolate", "web-02");                  // no incident
  act(with(responder("bob"), "INC-43"), "block", "all");  // another incident
  v1::IncidentNoteRequest note;
  note.set_incident_id("INC-42");
  note.set_text("attacker used a stolen VPN account");
  ASSERT_TRUE(service_->note(responder("carol"), note).ok());

  // A capture taken for it: its bundle and custody are part of the timeline.
  ASSERT_TRUE(store_
                  ->addCapture(CaptureRow{.capture_id = "cap-1",
                                          .host_id = "web-01",
                                          .requested_by = "alice",
                                          .reason = "INC work",
                                          .command_id = "capture-cap-1",
                                          .incident = "INC-42",
                                          .incident_tenant = "default"})
                  .ok());
  ASSERT_TRUE(
      store_
          ->addEvidence(EvidenceRow{.id = kBundleId, .capture_id = "cap-1", .host_id = "web-01"},
                        {CustodyEntry{.evidence_id = kBundleId,
                                      .at_unix_ms = clock_.nowUnixMs(),
                                      .actor = "alice",
                                      .action = "requested"}})
          .ok());

  auto timeline = service_->show(Caller{.audit_name = "vic", .is_operator = true}, "INC-42");
  ASSERT_TRUE(timeline.ok()) << timeline.status();
  std::vector<std::tuple<std::string, std::string, std::string>> rows;
  for (const auto& r : timeline->records) rows.emplace_back(r.operator_name, r.action, r.target);
  EXPECT_EQ(rows, (std::vector<std::tuple<std::string, std::string, std::string>>{
                      {"alice", "incident-open", "INC-42"},
                      {"alice", "isolate", "web-01"},
                      {"carol", "incident-note", "INC-42"}}));
  EXPECT_EQ(timeline->records.back().reason, "attacker used a stolen VPN account");
  ASSERT_EQ(timeline->evidence.size(), 1u);
  EXPECT_EQ(timeline->evidence[0].first.id, kBundleId);
  EXPECT_EQ(timeline->evidence[0].second.size(), 1u);
  EXPECT_EQ(timeline->now_unix_ms, clock_.nowUnixMs());

  auto listed = service_->list(responder());
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].incident_id(), "INC-42");  // same opening time: in the store's order
  // The incident is part of each row's hash: the chain checks, and moving a row to another
  // incident breaks it.
  auto verified = store_->verifyAudit();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->ok);
  ASSERT_TRUE(
      store_->execForTest("UPDATE audit SET incident = 'INC-43' WHERE target = 'web-01'").ok());
  verified = store_->verifyAudit();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_FALSE(verified->ok);
}

TEST_F(IncidentServiceTest, BadInputIsRefusedNamingTheFieldAuditedAndChangesNothing) {
  const auto rows_before = audit().size();
  auto expectRefused = [&](const v1::OpenIncidentRequest& req, absl::StatusCode code,
                           const std::string& message) {
    auto opened = service_->open(responder(), req);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), code) << opened.status();
    EXPECT_EQ(opened.status().message(), message);
  };
  expectRefused(openRequest("INC 42"), absl::StatusCode::kInvalidArgument,
                "incident id: invalid value \"INC 42\": 1-63 characters of [A-Za-z0-9._-], e.g. "
                "INC-42");
  expectRefused(openRequest("INC-42", "  "), absl::StatusCode::kInvalidArgument, "title: required");
  auto future = openRequest("INC-42");
  future.set_detected_unix_ms(clock_.nowUnixMs() + 3'600'000);
  expectRefused(
      future, absl::StatusCode::kInvalidArgument,
      fmt::format("detected at: {} is in the future (the controller's time is {})",
                  utcTimeText(clock_.nowUnixMs() + 3'600'000), utcTimeText(clock_.nowUnixMs())));
  auto listed = service_->list(responder());
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
  ASSERT_TRUE(service_->open(responder(), openRequest("INC-42")).ok());
  expectRefused(openRequest("INC-42"), absl::StatusCode::kAlreadyExists,
                "incident INC-42 exists in tenant default: choose another id");
  // Every call audited: 3 refusals, the listing, the opening, the refusal of the duplicate.
  EXPECT_EQ(audit().size(), rows_before + 6);
  // A viewer may not open one.
  auto viewer =
      service_->open(Caller{.audit_name = "vic", .is_operator = true}, openRequest("INC-44"));
  EXPECT_TRUE(absl::IsPermissionDenied(viewer.status())) << viewer.status();
}

TEST_F(IncidentServiceTest, AnUnknownOrClosedIncidentRefusesEveryCallMadeWithIt) {
  const Caller unknown = with(responder(), "INC-9");
  EXPECT_TRUE(absl::IsNotFound(unknown.refusal)) << unknown.refusal;
  EXPECT_EQ(unknown.refusal.message(), "--incident: unknown incident \"INC-9\"");
  EXPECT_EQ(authorize(unknown, OperatorAction::kIsolate), unknown.refusal);
  EXPECT_EQ(with(responder(), "bad id").refusal.code(), absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(service_->open(responder(), openRequest("INC-42")).ok());
  v1::CloseIncidentRequest close;
  close.set_incident_id("INC-42");
  auto refused = service_->close(responder(), close);
  EXPECT_EQ(refused.status().message(), "summary: required");
  close.set_summary("contained; VPN account disabled; web-01 rebuilt");
  auto closed = service_->close(responder("bob"), close);
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(closed->state(), v1::INCIDENT_STATE_CLOSED);
  EXPECT_EQ(closed->closed_by(), "bob");
  EXPECT_EQ(audit().back().incident, "INC-42");
  EXPECT_EQ(audit().back().action, "incident-close");

  const Caller late = with(responder(), "INC-42");
  EXPECT_TRUE(absl::IsFailedPrecondition(late.refusal)) << late.refusal;
  EXPECT_EQ(late.refusal.message(),
            "--incident: incident INC-42 is closed: open a new one, or act without --incident");
  v1::IncidentNoteRequest note;
  note.set_incident_id("INC-42");
  note.set_text("late note");
  EXPECT_TRUE(absl::IsFailedPrecondition(service_->note(responder(), note).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(service_->close(responder(), close).status()));
  auto shown = service_->show(responder(), "INC-42");
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(shown->incident.summary(), "contained; VPN account disabled; web-01 rebuilt");
}

TEST_F(IncidentServiceTest, AnotherTenantsIncidentReadsExactlyLikeAnUnknownOne) {
  auto acme = service_->open(acmeOperator(), openRequest("INC-1"));
  ASSERT_TRUE(acme.ok()) << acme.status();
  EXPECT_EQ(acme->tenant(), "acme");
  EXPECT_EQ(audit().back().tenant, "acme");
  EXPECT_EQ(audit().back().incident, "INC-1");

  auto other = service_->show(responder(), "INC-1");
  auto made_up = service_->show(responder(), "INC-77");
  EXPECT_TRUE(absl::IsNotFound(other.status())) << other.status();
  EXPECT_EQ(other.status().message(), "unknown incident \"INC-1\"");
  EXPECT_EQ(made_up.status().message(), "unknown incident \"INC-77\"");
  EXPECT_EQ(with(responder(), "INC-1").refusal.message(), "--incident: unknown incident \"INC-1\"");
  auto listed = service_->list(responder());
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
  // Ids are per tenant: default may have its own INC-1.
  ASSERT_TRUE(service_->open(responder(), openRequest("INC-1")).ok());
  // acme's viewer sees acme's only.
  auto acme_list = service_->list(acmeOperator(Role::kViewer));
  ASSERT_TRUE(acme_list.ok()) << acme_list.status();
  ASSERT_EQ(acme_list->size(), 1u);
  EXPECT_EQ((*acme_list)[0].tenant(), "acme");
}

TEST_F(IncidentServiceTest, ACallAcrossTenantsCannotBePartOfAnIncident) {
  Caller everywhere = acmeOperator();
  everywhere.grants.push_back(Grant{.tenant = "beta", .role = Role::kResponder});
  everywhere.tenants = {"acme", "beta"};
  everywhere.all_tenants = true;
  const Caller scoped = with(everywhere, "INC-1");
  EXPECT_TRUE(absl::IsInvalidArgument(scoped.refusal)) << scoped.refusal;
  EXPECT_NE(scoped.refusal.message().find("choose it with --tenant NAME"), std::string::npos)
      << scoped.refusal;
}

// A PDF engine for tests: the HTML it was given, behind a PDF header; or a failure.
class FakePdf : public PdfRenderer {
 public:
  explicit FakePdf(absl::Status failure = absl::OkStatus()) : failure_(std::move(failure)) {}
  absl::StatusOr<std::string> render(std::string_view html) const override {
    if (!failure_.ok()) return failure_;
    return "%PDF-1.7\n" + std::string(html);
  }

 private:
  absl::Status failure_;
};

TEST_F(IncidentServiceTest, AReportIsSignedAuditedAndNamesABundleItCouldNotRead) {
  auto ca = createCa("test-ca", std::chrono::hours(1));
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto cert = issueCert(*ca, CertRequest{.kind = PeerKind::kController, .name = "controller"});
  ASSERT_TRUE(cert.ok()) << cert.status();
  auto signer = evidence::Signer::fromPem(cert->key_pem, cert->cert_pem);
  ASSERT_TRUE(signer.ok()) << signer.status();
  const FakePdf pdf;
  IncidentService service(clock_, *store_, &*signer, &pdf, [this](const std::string& id) {
    return absl::StatusOr<std::filesystem::path>(dir_ / (id + ".tar.gz"));
  });
  ASSERT_TRUE(service.open(responder(), openRequest("INC-42")).ok());
  act(with(responder(), "INC-42"), "isolate", "web-01");
  // A bundle of the incident whose file is gone: listed, with the reason, never left out.
  ASSERT_TRUE(store_
                  ->addCapture(CaptureRow{.capture_id = "cap-1",
                                          .host_id = "web-01",
                                          .requested_by = "alice",
                                          .reason = "INC work",
                                          .command_id = "capture-cap-1",
                                          .incident = "INC-42",
                                          .incident_tenant = "default"})
                  .ok());
  ASSERT_TRUE(store_
                  ->addEvidence(
                      EvidenceRow{.id = kBundleId, .capture_id = "cap-1", .host_id = "web-01"}, {})
                  .ok());

  const Caller viewer{.audit_name = "vic", .is_operator = true};
  auto json_report = service.report(viewer, "INC-42", "json");
  ASSERT_TRUE(json_report.ok()) << json_report.status();
  const auto doc = nlohmann::json::parse(json_report->file);
  ASSERT_EQ(doc["timeline"].size(), 2u);
  EXPECT_EQ(doc["timeline"][1]["action"], "isolate");
  ASSERT_EQ(doc["evidence"].size(), 1u);
  EXPECT_EQ(doc["evidence"][0]["sha256"], kBundleId);
  EXPECT_TRUE(doc["evidence"][0]["problem"].get<std::string>().starts_with("bundle unreadable"))
      << doc["evidence"][0]["problem"];

  auto pdf_report = service.report(viewer, "INC-42", "pdf");
  ASSERT_TRUE(pdf_report.ok()) << pdf_report.status();
  EXPECT_TRUE(pdf_report->file.starts_with("%PDF-1.7\n<!DOCTYPE html>"));
  EXPECT_EQ(pdf_report->format, "pdf");
  EXPECT_TRUE(evidence::checkSignature(pdf_report->certificate_pem, pdf_report->manifest,
                                       pdf_report->signature)
                  .ok());
  auto manifest = evidence::parseReportManifest(pdf_report->manifest);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->sha256, evidence::sha256Hex(pdf_report->file));
  EXPECT_EQ(manifest->size, pdf_report->file.size());
  EXPECT_EQ(manifest->incident, "INC-42");
  EXPECT_EQ(manifest->tenant, "default");
  EXPECT_EQ(manifest->controller, "controller");
  // Each report is an audit row naming the file's hash (not part of the incident's timeline
  // unless asked for with --incident).
  const auto rows = audit();
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.back().action, "incident-report");
  EXPECT_EQ(rows.back().incident, "");
  EXPECT_NE(rows.back().detail.find(manifest->sha256), std::string::npos) << rows.back().detail;

  // Another tenant's viewer reads it as unknown; bad formats and a failing engine are refused.
  auto other = service.report(acmeOperator(Role::kViewer), "INC-42", "json");
  EXPECT_TRUE(absl::IsNotFound(other.status())) << other.status();
  auto docx = service.report(viewer, "INC-42", "docx");
  EXPECT_EQ(docx.status().message(), "format: \"docx\" is not one of html, pdf, json, md");
  const FakePdf broken(absl::FailedPreconditionError("pdf: \"chromium\" is not installed"));
  IncidentService no_engine(clock_, *store_, &*signer, &broken);
  auto refused = no_engine.report(viewer, "INC-42", "pdf");
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_TRUE(no_engine.report(viewer, "INC-42", "html").ok());
  auto unsigned_report = service_->report(viewer, "INC-42", "html");
  EXPECT_TRUE(absl::IsUnavailable(unsigned_report.status())) << unsigned_report.status();
}

}  // namespace
}  // namespace bulkhead::controller
