// The HTTPS webhook listener on 127.0.0.1 with a certificate of its own: integrations from a
// real IntegrationService on SQLite, a fake SignalIntake. Token checks, revocation, the body
// limit, the rate limit, content types, and nothing submitted from a malformed batch.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/pki/pki.h"
#include "controller/service/integrations.h"
#include "controller/service/record_text.h"
#include "controller/store/sqlite_store.h"
#include "controller/webhook/formats.h"
#include "controller/webhook/listener.h"
#include "tests/unit/controller/fake_clock.h"

namespace bulkhead::controller::webhook {
namespace {

namespace v1 = bulkhead::v1;
namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

// Records every signal; answers ACTED with a fresh id.
class FakeIntake final : public SignalIntake {
 public:
  void submit(SignalDelivery from, v1::Signal signal, SignalDone done) override {
    SignalOutcome out;
    {
      std::lock_guard lock(mu);
      out.signal_id = "sig-" + std::to_string(got.size() + 1);
      got.emplace_back(from.delivered_by, std::move(signal));
      tenants.push_back(from.tenant);
    }
    out.disposition = v1::SIGNAL_DISPOSITION_ACTED;
    done(out);
  }
  size_t count() {
    std::lock_guard lock(mu);
    return got.size();
  }
  std::mutex mu;
  std::vector<std::pair<std::string, v1::Signal>> got;
  std::vector<std::string> tenants;  // each signal's delivery tenant
};

const char kAlert[] =
    R"({"version":"4","status":"firing","alerts":[{"status":"firing","fingerprint":"f1",
        "startsAt":"2026-12-04T02:40:00Z","labels":{"alertname":"SSHBruteForce","host":"h2"}}]})";

class WebhookListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("bh-webhook-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto ca = createCa("test-ca", std::chrono::hours(24));
    ASSERT_TRUE(ca.ok()) << ca.status();
    CertRequest req;
    req.kind = PeerKind::kController;
    req.name = "bulkhead-webhook";
    req.ip_addresses = {"127.0.0.1"};
    auto leaf = issueCert(*ca, req);
    ASSERT_TRUE(leaf.ok()) << leaf.status();
    std::ofstream(dir_ / "ca.pem") << ca->cert_pem;
    std::ofstream(dir_ / "tls.crt") << leaf->cert_pem;
    std::ofstream(dir_ / "tls.key") << leaf->key_pem;
    auto store = SqliteStore::create(dir_ / "db.sqlite");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    integrations_ = std::make_unique<IntegrationService>(
        clock_, *store_, [](const std::string& format, const std::string& config) {
          auto f = parseFormat(format);
          if (!f.ok()) return f.status();
          return parseFormatConfig(*f, config).status();
        });
    auto created =
        integrations_->create(admin_, "am", "alertmanager", v1::INTEGRATION_FORMAT_UNSPECIFIED, "");
    ASSERT_TRUE(created.ok()) << created.status();
    token_ = created->token;
  }

  void start(size_t body_limit = 4096, uint32_t rate = 100) {
    auto l = Listener::start(clock_, *integrations_, intake_,
                             ListenerOptions{.listen = "127.0.0.1:0",
                                             .cert_file = (dir_ / "tls.crt").string(),
                                             .key_file = (dir_ / "tls.key").string(),
                                             .body_limit = body_limit,
                                             .rate_per_minute = rate,
                                             .threads = 2});
    ASSERT_TRUE(l.ok()) << l.status();
    listener_ = std::move(*l);
  }

  void TearDown() override {
    if (listener_) listener_->stop();
    fs::remove_all(dir_);
  }

  // POSTs `body` to /v1/signals/NAME over TLS, verifying the listener's certificate.
  httplib::Result post(const std::string& name, const std::string& body, const std::string& token,
                       const std::string& type = "application/json") {
    httplib::SSLClient client("127.0.0.1", listener_->port());
    client.set_ca_cert_path((dir_ / "ca.pem").string().c_str());
    client.enable_server_certificate_verification(true);
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client.Post(("/v1/signals/" + name).c_str(), headers, body, type.c_str());
  }

  std::vector<AuditEntry> refusalRows() {
    std::vector<AuditEntry> out;
    auto all = store_->listAudit(0);
    EXPECT_TRUE(all.ok());
    if (!all.ok()) return out;
    for (auto& e : *all) {
      if (e.action == kWebhookRefusedAuditAction) out.push_back(e);
    }
    return out;
  }

  FakeClock clock_;
  fs::path dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<IntegrationService> integrations_;
  FakeIntake intake_;
  std::unique_ptr<Listener> listener_;
  std::string token_;
  Caller admin_{.audit_name = "alice", .is_operator = true, .role = Role::kAdmin};
};

TEST_F(WebhookListenerTest, AcceptsAnAlertWithItsToken) {
  start();
  auto res = post("am", kAlert, token_);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 202) << res->body;
  json body = json::parse(res->body);
  EXPECT_EQ(body["signals"][0]["signal_id"], "sig-1");
  EXPECT_EQ(body["signals"][0]["disposition"], "acted");
  ASSERT_EQ(intake_.count(), 1U);
  EXPECT_EQ(intake_.got[0].first, "integration:am");
  EXPECT_EQ(intake_.got[0].second.rule(), "SSHBruteForce");
  EXPECT_EQ(intake_.got[0].second.integration(), "am");
}

TEST_F(WebhookListenerTest, RefusesMissingWrongAndRevokedTokens) {
  start();
  EXPECT_EQ(post("am", kAlert, "")->status, 401);
  EXPECT_EQ(post("am", kAlert, std::string(64, '0'))->status, 401);
  EXPECT_EQ(post("nobody", kAlert, token_)->status, 404);
  ASSERT_TRUE(integrations_->revoke(admin_, "am", "INC-1").ok());
  auto res = post("am", kAlert, token_);
  EXPECT_EQ(res->status, 401);
  EXPECT_THAT(res->body, HasSubstr("token"));
  EXPECT_EQ(intake_.count(), 0U);
}

TEST_F(WebhookListenerTest, ATokenOpensOnlyItsOwnIntegration) {
  auto other =
      integrations_->create(admin_, "falco", "falco", v1::INTEGRATION_FORMAT_UNSPECIFIED, "");
  ASSERT_TRUE(other.ok());
  start();
  EXPECT_EQ(post("falco", kAlert, token_)->status, 401);
  EXPECT_EQ(post("am", kAlert, other->token)->status, 401);
  EXPECT_EQ(intake_.count(), 0U);
}

TEST_F(WebhookListenerTest, ATenantsIntegrationDeliversIntoItsTenantAndNoOtherSeesIt) {
  const Caller acme{.audit_name = "ann@acme",
                    .is_operator = true,
                    .grants = {Grant{.tenant = "acme", .role = Role::kAdmin}},
                    .tenants = {"acme"}};
  auto created = integrations_->create(acme, "acme-am", "alertmanager",
                                       v1::INTEGRATION_FORMAT_UNSPECIFIED, "");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->integration.tenant(), "acme");
  start();
  ASSERT_EQ(post("acme-am", kAlert, created->token)->status, 202);
  ASSERT_EQ(post("am", kAlert, token_)->status, 202);
  ASSERT_EQ(intake_.count(), 2U);
  EXPECT_EQ(intake_.tenants[0], "acme");
  EXPECT_EQ(intake_.tenants[1], "default");

  // Each tenant lists its own; the install's admin with '*' lists both.
  auto listed = integrations_->list(acme);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1U);
  EXPECT_EQ(listed->at(0).name(), "acme-am");
  ASSERT_EQ(integrations_->list(admin_)->size(), 1U);
  EXPECT_EQ(integrations_->list(admin_)->at(0).name(), "am");
  Caller everywhere = admin_;
  everywhere.tenants = {"acme", "default"};
  everywhere.all_tenants = true;
  EXPECT_EQ(integrations_->list(everywhere)->size(), 2U);
  // Another tenant's integration reads as unknown: not revoked.
  auto refused = integrations_->revoke(acme, "am", "not yours");
  EXPECT_TRUE(absl::IsNotFound(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message(), "no integration \"am\"");
  EXPECT_EQ(post("am", kAlert, token_)->status, 202);
  // Its creation row is in acme's trail.
  bool in_acme = false;
  auto rows = store_->listAudit(0);
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (const AuditEntry& e : *rows) {
    in_acme |= e.action == "integration-create" && e.target == "acme-am" && e.tenant == "acme";
  }
  EXPECT_TRUE(in_acme);
}

TEST_F(WebhookListenerTest, RefusalsAreAuditedOnceAMinuteWithACount) {
  start();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(post("am", kAlert, "wrong")->status, 401);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(post("x" + std::to_string(i), kAlert, "t")->status, 404);
  // The first refusal of each key is audited; the rest are counted.
  EXPECT_EQ(refusalRows().size(), 2U);
  clock_.advance(std::chrono::minutes(1));
  EXPECT_EQ(post("am", kAlert, "wrong")->status, 401);
  auto rows = refusalRows();
  ASSERT_EQ(rows.size(), 3U);
  EXPECT_EQ(rows[2].target, "integration:am");
  EXPECT_THAT(rows[2].detail, HasSubstr("5 request(s) refused"));
  EXPECT_EQ(rows[2].outcome, "denied");
  integrations_->flushRefusals();
  rows = refusalRows();
  ASSERT_EQ(rows.size(), 4U);
  EXPECT_EQ(rows[3].target, "(unknown integration)");
  EXPECT_THAT(rows[3].detail, HasSubstr("4 request(s) refused"));
}

TEST_F(WebhookListenerTest, BodyOverTheLimitIs413) {
  start(/*body_limit=*/256);
  std::string big = std::string(R"({"version":"4","pad":")") + std::string(1000, 'x') + "\"}";
  auto res = post("am", big, token_);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(intake_.count(), 0U);
}

TEST_F(WebhookListenerTest, RateLimitPerIntegrationIs429) {
  start(4096, /*rate=*/3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(post("am", kAlert, token_)->status, 202);
  auto res = post("am", kAlert, token_);
  EXPECT_EQ(res->status, 429);
  EXPECT_EQ(res->get_header_value("Retry-After"), "60");
  clock_.advance(std::chrono::seconds(20));  // a third of a minute: one more
  EXPECT_EQ(post("am", kAlert, token_)->status, 202);
  EXPECT_EQ(post("am", kAlert, token_)->status, 429);
  EXPECT_EQ(intake_.count(), 4U);
}

TEST_F(WebhookListenerTest, WrongContentTypeIs415) {
  start();
  EXPECT_EQ(post("am", kAlert, token_, "text/plain")->status, 415);
  EXPECT_EQ(post("am", kAlert, token_, "application/json; charset=utf-8")->status, 202);
}

TEST_F(WebhookListenerTest, AMalformedAlertInABatchSubmitsNothing) {
  start();
  const std::string batch =
      R"({"version":"4","alerts":[
          {"status":"firing","fingerprint":"a","labels":{"alertname":"Good"}},
          {"status":"firing","fingerprint":"b","labels":{"severity":"critical"}}]})";
  auto res = post("am", batch, token_);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["error"], "alerts[1].labels.alertname: required");
  EXPECT_EQ(intake_.count(), 0U);
}

TEST_F(WebhookListenerTest, OnlyPostOnTheSignalPath) {
  start();
  httplib::SSLClient client("127.0.0.1", listener_->port());
  client.enable_server_certificate_verification(false);
  EXPECT_EQ(client.Get("/v1/signals/am")->status, 404);
  EXPECT_EQ(client.Post("/other", "{}", "application/json")->status, 404);
}

TEST_F(WebhookListenerTest, BadCertificateOrAddressFailsNamingTheFlag) {
  auto bad_cert = Listener::start(clock_, *integrations_, intake_,
                                  ListenerOptions{.listen = "127.0.0.1:0",
                                                  .cert_file = (dir_ / "missing.crt").string(),
                                                  .key_file = (dir_ / "tls.key").string()});
  EXPECT_THAT(std::string(bad_cert.status().message()), HasSubstr("--webhook-cert"));
  auto bad_addr = Listener::start(clock_, *integrations_, intake_,
                                  ListenerOptions{.listen = "127.0.0.1",
                                                  .cert_file = (dir_ / "tls.crt").string(),
                                                  .key_file = (dir_ / "tls.key").string()});
  EXPECT_THAT(std::string(bad_addr.status().message()), HasSubstr("--webhook-listen"));
}

// A stop() before the listening thread runs its loop used to be lost, and stop() then waited
// for ever.
TEST_F(WebhookListenerTest, StopRightAfterStartReturns) {
  for (int i = 0; i < 100; ++i) {
    start();
    listener_->stop();
    listener_.reset();
  }
}

TEST_F(WebhookListenerTest, ASecondListenerOnTheSamePortFailsInsteadOfSharingIt) {
  start();
  auto second = Listener::start(
      clock_, *integrations_, intake_,
      ListenerOptions{.listen = fmt::format("127.0.0.1:{}", listener_->port()),
                      .cert_file = (dir_ / "tls.crt").string(),
                      .key_file = (dir_ / "tls.key").string()});
  if (second.ok()) (*second)->stop();
  ASSERT_FALSE(second.ok()) << "a second listener shares the port";
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("--webhook-listen"));
}

// The text form alone, as an older CLI sends it.
constexpr v1::IntegrationFormat kAnyFormatType = v1::INTEGRATION_FORMAT_UNSPECIFIED;

TEST(IntegrationServiceTest, CreateListRevokeAreAuthorizedAndAudited) {
  FakeClock clock;
  const fs::path dir =
      fs::temp_directory_path() / ("bh-integrations-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto store = SqliteStore::create(dir / "db.sqlite");
  ASSERT_TRUE(store.ok());
  IntegrationService svc(clock, **store, [](const std::string& format, const std::string& config) {
    auto f = parseFormat(format);
    if (!f.ok()) return f.status();
    return parseFormatConfig(*f, config).status();
  });
  Caller admin{.audit_name = "alice", .is_operator = true, .role = Role::kAdmin};
  Caller responder{.audit_name = "bob", .is_operator = true, .role = Role::kResponder};
  Caller viewer{.audit_name = "carol", .is_operator = true, .role = Role::kViewer};
  EXPECT_TRUE(absl::IsPermissionDenied(
      svc.create(responder, "x", "alertmanager", kAnyFormatType, "").status()));
  EXPECT_THAT(
      std::string(
          svc.create(admin, "Bad Name", "alertmanager", kAnyFormatType, "").status().message()),
      HasSubstr("name:"));
  EXPECT_THAT(std::string(svc.create(admin, "g", "generic", kAnyFormatType, "").status().message()),
              HasSubstr("mapping: required"));
  auto made = svc.create(admin, "am", "alertmanager", kAnyFormatType, "");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->token.size(), 64U);
  EXPECT_TRUE(absl::IsAlreadyExists(svc.create(admin, "am", "falco", kAnyFormatType, "").status()));
  // The token is not stored, its hash is.
  auto row = (*store)->findIntegration("am");
  ASSERT_TRUE(row.ok() && row->has_value());
  EXPECT_NE((*row)->token_sha256, made->token);
  EXPECT_EQ((*row)->token_sha256.size(), 64U);
  auto listed = svc.list(viewer);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1U);
  EXPECT_EQ((*listed)[0].created_by(), "alice");
  EXPECT_EQ((*listed)[0].format_type(), v1::INTEGRATION_FORMAT_ALERTMANAGER);
  EXPECT_TRUE(absl::IsInvalidArgument(svc.revoke(admin, "am", "").status()));
  EXPECT_TRUE(absl::IsNotFound(svc.revoke(admin, "nope", "r").status()));
  EXPECT_TRUE(absl::IsPermissionDenied(svc.revoke(responder, "am", "r").status()));
  auto revoked = svc.revoke(admin, "am", "INC-7");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_NE(revoked->revoked_unix_ms(), 0);
  EXPECT_TRUE(absl::IsFailedPrecondition(svc.revoke(admin, "am", "again").status()));
  EXPECT_TRUE(absl::IsUnauthenticated(svc.authenticate("am", made->token).status()));
  std::vector<std::string> actions;
  auto all = (*store)->listAudit(0);
  ASSERT_TRUE(all.ok());
  for (const auto& e : *all) actions.push_back(e.action);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "integration-create"), 5);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "integration-revoke"), 5);
  EXPECT_EQ(std::count(actions.begin(), actions.end(), "integrations"), 1);
  fs::remove_all(dir);
}

// The contract's IntegrationFormat values and the formats the listener reads are one list.
TEST(IntegrationServiceTest, EveryIntegrationFormatIsAWebhookFormat) {
  const auto* values = v1::IntegrationFormat_descriptor();
  for (int i = 0; i < values->value_count(); ++i) {
    const auto value = static_cast<v1::IntegrationFormat>(values->value(i)->number());
    if (value == v1::INTEGRATION_FORMAT_UNSPECIFIED) continue;
    auto parsed = parseFormat(integrationFormatText(value));
    ASSERT_TRUE(parsed.ok()) << values->value(i)->name() << ": " << parsed.status();
    EXPECT_EQ(readIntegrationFormat(formatName(*parsed)), value);
  }
  for (Format f : {Format::kAlertmanager, Format::kFalco, Format::kGeneric}) {
    EXPECT_NE(readIntegrationFormat(formatName(f)), v1::INTEGRATION_FORMAT_UNSPECIFIED)
        << formatName(f);
  }
  EXPECT_EQ(integrationFormatText(v1::INTEGRATION_FORMAT_UNSPECIFIED), "");
}

// A current CLI names the format typed (and as text, for older controllers); either alone
// works, both must agree, and an unknown typed value is refused: nothing is created.
TEST(IntegrationServiceTest, FormatTypedOrAsTextBothMustAgree) {
  FakeClock clock;
  const fs::path dir =
      fs::temp_directory_path() / ("bh-integration-format-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto store = SqliteStore::create(dir / "db.sqlite");
  ASSERT_TRUE(store.ok());
  IntegrationService svc(clock, **store, [](const std::string& format, const std::string& config) {
    auto f = parseFormat(format);
    if (!f.ok()) return f.status();
    return parseFormatConfig(*f, config).status();
  });
  Caller admin{.audit_name = "alice", .is_operator = true, .role = Role::kAdmin};

  auto typed = svc.create(admin, "typed", "", v1::INTEGRATION_FORMAT_FALCO, "");
  ASSERT_TRUE(typed.ok()) << typed.status();
  EXPECT_EQ(typed->integration.format(), "falco");
  EXPECT_EQ(typed->integration.format_type(), v1::INTEGRATION_FORMAT_FALCO);
  auto both = svc.create(admin, "both", "alertmanager", v1::INTEGRATION_FORMAT_ALERTMANAGER, "");
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->integration.format_type(), v1::INTEGRATION_FORMAT_ALERTMANAGER);

  auto disagree = svc.create(admin, "x", "falco", v1::INTEGRATION_FORMAT_GENERIC, "");
  EXPECT_TRUE(absl::IsInvalidArgument(disagree.status()));
  EXPECT_THAT(std::string(disagree.status().message()),
              HasSubstr("format: \"falco\" disagrees with format_type generic"));
  auto unknown = svc.create(admin, "y", "", static_cast<v1::IntegrationFormat>(42), "");
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("format_type: unknown value 42"));
  auto neither = svc.create(admin, "z", "", v1::INTEGRATION_FORMAT_UNSPECIFIED, "");
  EXPECT_TRUE(absl::IsInvalidArgument(neither.status()));
  auto listed = svc.list(admin);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2U);  // both, typed: nothing of the refused ones
  fs::remove_all(dir);
}

}  // namespace
}  // namespace bulkhead::controller::webhook
