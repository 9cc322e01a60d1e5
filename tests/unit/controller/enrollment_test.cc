// EnrollmentService on a real SQLite store: join tokens are admin business, audited; a token
// enrolls as many new hosts as it has uses, never an existing host, never after expiry or
// revocation; refusals are one line and write nothing but (bounded) audit rows.
#include "controller/service/enrollment.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/certificate.h"
#include "common/join_token.h"
#include "common/pki/pki.h"
#include "controller/store/sqlite_store.h"
#include "tests/unit/controller/fake_clock.h"
#include "tests/unit/controller/faulty_store.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;
namespace v1 = bulkhead::v1;
using ::testing::HasSubstr;

class EnrollmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bh-enroll-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto store = SqliteStore::create(dir_ / "db.sqlite");
    ASSERT_TRUE(store.ok()) << store.status();
    real_ = *std::move(store);
    faulty_ = std::make_unique<testing::FaultyStore>(*real_);
    auto ca = createCa("fleet-ca", std::chrono::hours(24 * 365));
    ASSERT_TRUE(ca.ok());
    ca_ = *ca;
    service_ = std::make_unique<EnrollmentService>(
        clock_, *faulty_,
        EnrollmentOptions{.ca = ca_,
                          .controller_name = "bulkhead-controller",
                          .enroll_addresses = {"10.77.0.1:7444"},
                          .controller_addresses = {"10.77.0.1:7443"}});
  }
  void TearDown() override {
    service_.reset();
    faulty_.reset();
    real_.reset();
    fs::remove_all(dir_);
  }

  std::string create(uint32_t uses = 2, uint32_t ttl = 3600) {
    auto made =
        service_->createToken(admin_, {{"role", "web"}, {"env", "prod"}}, ttl, uses, "CHG-1");
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? made->text : "";
  }
  absl::StatusOr<v1::EnrollResponse> enroll(const std::string& token, const std::string& host) {
    auto req = createKeyAndCsr(host);
    EXPECT_TRUE(req.ok());
    last_key_ = req->key_pem;
    return service_->enroll(token, host, req->csr_pem, "ipv4:10.77.0.9:50000");
  }
  std::vector<AuditEntry> audit(const std::string& action) {
    std::vector<AuditEntry> out;
    auto rows = real_->listAudit(0);
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return out;
    for (const AuditEntry& e : *rows) {
      if (e.action == action) out.push_back(e);
    }
    return out;
  }

  FakeClock clock_;
  fs::path dir_;
  std::unique_ptr<SqliteStore> real_;
  std::unique_ptr<testing::FaultyStore> faulty_;
  CertAndKey ca_;
  std::unique_ptr<EnrollmentService> service_;
  std::string last_key_;
  const Caller admin_{.audit_name = "alice", .is_operator = true, .role = Role::kAdmin};
  const Caller responder_{.audit_name = "bob", .is_operator = true, .role = Role::kResponder};
};

TEST_F(EnrollmentTest, ATokenCarriesWhatTheServerNeedsAndStoresOnlyTheSecretsHash) {
  const std::string text = create();
  auto token = parseJoinToken(text);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->enroll_addresses, std::vector<std::string>{"10.77.0.1:7444"});
  EXPECT_EQ(token->controller_name, "bulkhead-controller");
  EXPECT_EQ(token->ca_sha256, *certificateSha256(ca_.cert_pem));
  auto rows = real_->listJoinTokens();
  ASSERT_EQ(rows->size(), 1U);
  EXPECT_EQ((*rows)[0].record.token_id(), token->token_id);
  EXPECT_NE((*rows)[0].secret_sha256, token->secret);
  EXPECT_EQ((*rows)[0].record.max_uses(), 2U);
  EXPECT_EQ((*rows)[0].record.expires_unix_ms(), clock_.nowUnixMs() + 3'600'000);
  EXPECT_EQ((*rows)[0].record.created_by(), "alice");
  ASSERT_EQ(audit("token-create").size(), 1U);
  EXPECT_EQ(audit("token-create")[0].target, token->token_id);
  EXPECT_EQ(audit("token-create")[0].reason, "CHG-1");
  EXPECT_EQ(audit("token-create")[0].detail.find(token->secret), std::string::npos);
}

TEST_F(EnrollmentTest, OnlyAdminsManageTokensAndBadValuesAreRefusedUnwritten) {
  EXPECT_TRUE(
      absl::IsPermissionDenied(service_->createToken(responder_, {}, 3600, 1, "x").status()));
  EXPECT_TRUE(absl::IsPermissionDenied(service_->listTokens(responder_).status()));
  auto message = [&](const std::map<std::string, std::string>& labels, uint32_t ttl, uint32_t uses,
                     const std::string& reason) {
    auto made = service_->createToken(admin_, labels, ttl, uses, reason);
    EXPECT_TRUE(absl::IsInvalidArgument(made.status())) << made.status();
    return std::string(made.status().message());
  };
  EXPECT_THAT(message({}, 3600, 1, ""), HasSubstr("reason: required"));
  EXPECT_THAT(message({}, 30, 1, "r"), HasSubstr("ttl: 30 s is out of range"));
  EXPECT_THAT(message({}, 3600, 100'001, "r"), HasSubstr("uses:"));
  EXPECT_THAT(message({{"bad key!", "v"}}, 3600, 1, "r"), HasSubstr("labels"));
  EXPECT_TRUE(real_->listJoinTokens()->empty());
  EXPECT_EQ(audit("token-create").size(), 5U);  // every refusal audited too
  EXPECT_EQ(audit("tokens").size(), 1U);

  // Off without the CA key.
  EnrollmentService off(clock_, *real_, EnrollmentOptions{.ca = {ca_.cert_pem, ""}});
  auto refused = off.createToken(admin_, {}, 3600, 1, "r");
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status()));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("--enroll-listen"));
}

TEST_F(EnrollmentTest, EnrollIssuesForTheServersKeyWithTheTokensLabelsAndCountsTheUse) {
  const std::string text = create(2);
  auto answer = enroll(text, "web-03");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_TRUE(checkIdentityFiles(ca_.cert_pem, answer->cert_pem(), last_key_).ok());
  auto id = identityFromCertPem(answer->cert_pem());
  EXPECT_EQ(id->kind, PeerKind::kAgent);
  EXPECT_EQ(id->name, "web-03");
  EXPECT_EQ(answer->ca_pem(), ca_.cert_pem);
  EXPECT_EQ(answer->controller_name(), "bulkhead-controller");
  EXPECT_THAT(answer->controller_addresses(), ::testing::ElementsAre("10.77.0.1:7443"));
  EXPECT_EQ(answer->labels().at("role"), "web");
  auto token = real_->listJoinTokens()->at(0).record;
  EXPECT_EQ(token.uses(), 1U);
  EXPECT_THAT(token.enrolled_hosts(), ::testing::ElementsAre("web-03"));
  auto enrollment = real_->findEnrollment("web-03");
  ASSERT_TRUE(enrollment.ok() && enrollment->has_value());
  EXPECT_EQ((*enrollment)->serial, id->serial);
  EXPECT_EQ((*enrollment)->labels.at("env"), "prod");
  const auto rows = audit(kAgentEnrollAuditAction);
  ASSERT_EQ(rows.size(), 1U);
  EXPECT_EQ(rows[0].outcome, "ok");
  EXPECT_EQ(rows[0].target, "web-03");
  EXPECT_THAT(rows[0].detail, HasSubstr(id->serial));
}

TEST_F(EnrollmentTest, UsedUpExpiredRevokedWrongOrTakenAreRefusedAndIssueNothing) {
  const std::string text = create(1);
  ASSERT_TRUE(enroll(text, "web-01").ok());
  auto used_up = enroll(text, "web-02");
  EXPECT_TRUE(absl::IsPermissionDenied(used_up.status()));
  EXPECT_THAT(std::string(used_up.status().message()), HasSubstr("is used up (1 of 1 uses)"));

  const std::string two = create(5);
  auto taken = enroll(two, "web-01");  // a host the controller knows
  EXPECT_TRUE(absl::IsAlreadyExists(taken.status()));
  EXPECT_THAT(std::string(taken.status().message()), HasSubstr("already enrolled or known"));
  ASSERT_TRUE(real_->saveHosts({HostInfo{.host_id = "db-01"}}, {}, {}).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(enroll(two, "db-01").status()));  // registered, not enrolled

  auto wrong = parseJoinToken(two);
  wrong->secret = std::string(64, '0');
  auto forged = enroll(formatJoinToken(*wrong), "web-09");
  EXPECT_TRUE(absl::IsPermissionDenied(forged.status()));
  EXPECT_THAT(std::string(forged.status().message()), HasSubstr("not valid here"));
  EXPECT_TRUE(absl::IsInvalidArgument(enroll("bhjt1.garbage!", "web-09").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(enroll(two, "-bad host").status()));
  auto not_csr = service_->enroll(two, "web-09", "junk", "peer");
  EXPECT_THAT(std::string(not_csr.status().message()), HasSubstr("csr:"));

  clock_.advance(std::chrono::hours(2));
  auto expired = enroll(two, "web-09");
  EXPECT_TRUE(absl::IsPermissionDenied(expired.status()));
  EXPECT_THAT(std::string(expired.status().message()), HasSubstr("expired at"));

  const std::string three = create(5);
  auto id = parseJoinToken(three)->token_id;
  EXPECT_TRUE(absl::IsPermissionDenied(service_->revokeToken(responder_, id, "r").status()));
  ASSERT_TRUE(service_->revokeToken(admin_, id, "INC-7").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(service_->revokeToken(admin_, id, "again").status()));
  auto revoked = enroll(three, "web-10");
  EXPECT_THAT(std::string(revoked.status().message()), HasSubstr("was revoked"));

  // Only web-01 was ever enrolled.
  EXPECT_TRUE(real_->findEnrollment("web-01")->has_value());
  for (const char* host : {"web-02", "web-09", "web-10"}) {
    EXPECT_FALSE(real_->findEnrollment(host)->has_value()) << host;
  }
}

TEST_F(EnrollmentTest, RefusalsAreAuditedAtMostOnceAMinutePerToken) {
  const std::string text = create(1);
  ASSERT_TRUE(enroll(text, "web-01").ok());
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(enroll(text, "web-x" + std::to_string(i)).ok());
  auto refusals = [&] {
    size_t n = 0;
    for (const AuditEntry& e : audit(kAgentEnrollAuditAction)) n += e.outcome != "ok";
    return n;
  };
  EXPECT_EQ(refusals(), 1U);
  clock_.advance(std::chrono::seconds(61));
  EXPECT_FALSE(enroll(text, "web-y").ok());
  EXPECT_EQ(refusals(), 2U);
  // The second row counts the 49 refusals held back and this one.
  EXPECT_THAT(audit(kAgentEnrollAuditAction).back().detail, HasSubstr("50 refusals"));
}

// The redeem re-checks in its transaction, and a failed commit issues nothing.
TEST_F(EnrollmentTest, AFailedCommitIssuesNothingAndCountsNoUse) {
  const std::string text = create(1);
  faulty_->failNext("redeemJoinToken");
  auto failed = enroll(text, "web-01");
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(real_->listJoinTokens()->at(0).record.uses(), 0U);
  EXPECT_FALSE(real_->findEnrollment("web-01")->has_value());
  ASSERT_TRUE(enroll(text, "web-01").ok());  // the use was not spent
}

// Renewal over an agent's stream: the stream's host id, whatever the request says; at most one
// answered per host every kMinRenewalInterval (more are refused unaudited); audited; refused
// when the controller has no CA key.
TEST_F(EnrollmentTest, RenewalIssuesForTheStreamsHostAtMostOnceInTenMinutes) {
  auto req = createKeyAndCsr("claims-db-01");
  auto cert = service_->renew("web-01", kDefaultTenant, "0A0B", req->csr_pem);
  ASSERT_TRUE(cert.ok()) << cert.status();
  auto id = identityFromCertPem(*cert);
  EXPECT_EQ(id->name, "web-01");
  EXPECT_EQ(id->kind, PeerKind::kAgent);
  EXPECT_TRUE(checkIdentityFiles(ca_.cert_pem, *cert, req->key_pem).ok());
  auto again = service_->renew("web-01", kDefaultTenant, "0A0B", req->csr_pem);
  EXPECT_TRUE(absl::IsResourceExhausted(again.status())) << again.status();
  EXPECT_TRUE(service_->renew("web-02", "acme", "0C0D", req->csr_pem).ok());  // per host
  clock_.advance(std::chrono::minutes(11));
  EXPECT_TRUE(service_->renew("web-01", kDefaultTenant, "0A0B", req->csr_pem).ok());
  EXPECT_TRUE(
      absl::IsInvalidArgument(service_->renew("web-03", kDefaultTenant, "0E", "junk").status()));
  for (int i = 0; i < 100; ++i) {  // asked again at once: refused, not audited
    EXPECT_TRUE(absl::IsResourceExhausted(
        service_->renew("web-01", kDefaultTenant, "0A0B", req->csr_pem).status()));
  }
  const auto rows = audit(kAgentRenewAuditAction);
  ASSERT_EQ(rows.size(), 4U);  // web-01, web-02, web-01 again, web-03's bad request
  EXPECT_EQ(rows[0].operator_name, "agent:web-01");
  EXPECT_THAT(rows[0].detail, HasSubstr("serial 0A0B -> " + id->serial));
  EXPECT_EQ(rows[1].operator_name, "agent:web-02");
  EXPECT_EQ(rows[1].tenant, "acme");  // the host's tenant
  EXPECT_EQ(rows[0].tenant, kDefaultTenant);
  EXPECT_NE(rows[3].outcome, "ok");

  EnrollmentService off(clock_, *real_, EnrollmentOptions{.ca = {ca_.cert_pem, ""}});
  auto refused = off.renew("web-01", kDefaultTenant, "0A0B", req->csr_pem);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status()));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("pki issue agent --replace"));
}

// An operator token enrolls one named operator of the token's tenant: its key stays with it, its
// certificate holds no role of its own ("NAME@TENANT"), and its role binding is added in the
// same step. Nothing about it can reach another tenant's names or be used twice.
TEST_F(EnrollmentTest, AnOperatorTokenEnrollsOneOperatorWithItsBindingInTheTokensTenant) {
  const Caller acme_admin{.audit_name = "carol",
                          .is_operator = true,
                          .role = Role::kNone,
                          .grants = {Grant{.tenant = "acme", .role = Role::kAdmin, .hosts = {}}},
                          .tenants = {"acme"}};
  const OperatorTokenSpec dave{
      .name = "dave", .role = v1::OPERATOR_ROLE_VIEWER, .hosts = "env=prod"};
  auto made = service_->createToken(acme_admin, {}, 3600, 1, "CUST-7", dave);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->token.operator_name(), "dave@acme");
  EXPECT_EQ(made->token.tenant(), "acme");

  // A server cannot take it as an agent's token; the use is not spent.
  auto as_host = enroll(made->text, "web-01");
  EXPECT_TRUE(absl::IsInvalidArgument(as_host.status())) << as_host.status();
  EXPECT_THAT(std::string(as_host.status().message()), HasSubstr("enrolls operator \"dave@acme\""));

  auto req = createKeyAndCsr("operator");
  ASSERT_TRUE(req.ok());
  auto answer = service_->enroll(made->text, "", req->csr_pem, "ipv4:10.77.0.9:50000");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->operator_name(), "dave@acme");
  auto id = identityFromCertPem(answer->cert_pem());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->kind, PeerKind::kOperator);
  EXPECT_EQ(id->name, "dave@acme");
  EXPECT_EQ(id->role, Role::kNone);
  EXPECT_TRUE(checkIdentityFiles(ca_.cert_pem, answer->cert_pem(), req->key_pem).ok());
  auto bindings = real_->listRoleBindings("dave@acme");
  ASSERT_TRUE(bindings.ok());
  ASSERT_EQ(bindings->size(), 1U);
  EXPECT_EQ((*bindings)[0].tenant(), "acme");
  EXPECT_EQ((*bindings)[0].role_name(), "viewer");
  EXPECT_EQ((*bindings)[0].hosts(), "env=prod");
  EXPECT_EQ((*bindings)[0].created_by(), "carol");
  EXPECT_EQ((*bindings)[0].binding_id(), answer->binding().binding_id());
  const auto rows = audit(kOperatorEnrollAuditAction);
  ASSERT_EQ(rows.size(), 1U);
  EXPECT_EQ(rows[0].operator_name, "enroll:dave@acme");
  EXPECT_THAT(rows[0].detail, HasSubstr("tenant acme"));

  // Once only, and the name is taken from then on.
  auto twice = service_->enroll(made->text, "", req->csr_pem, "peer");
  EXPECT_TRUE(absl::IsPermissionDenied(twice.status())) << twice.status();
  auto again = service_->createToken(acme_admin, {}, 3600, 1, "CUST-8", dave);
  EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();

  // A name granted a role after the token was made is not taken over by it.
  auto erin = service_->createToken(
      acme_admin, {}, 3600, 1, "CUST-9",
      OperatorTokenSpec{.name = "erin", .role = v1::OPERATOR_ROLE_RESPONDER, .hosts = ""});
  ASSERT_TRUE(erin.ok()) << erin.status();
  v1::RoleBinding direct;
  direct.set_binding_id("rb-direct");
  direct.set_operator_name("erin@acme");
  direct.set_tenant("acme");
  direct.set_role(v1::OPERATOR_ROLE_ADMIN);
  ASSERT_TRUE(real_->addRoleBinding(direct, AuditEntry{.action = "access-grant"}).ok());
  auto taken = service_->enroll(erin->text, "", req->csr_pem, "peer");
  EXPECT_TRUE(absl::IsAlreadyExists(taken.status())) << taken.status();
  EXPECT_EQ(real_->listRoleBindings("erin@acme")->size(), 1U);

  // Refused at creation, naming the field: labels, several uses, no role, a name with a tenant.
  EXPECT_THAT(std::string(service_->createToken(acme_admin, {{"role", "web"}}, 3600, 1, "r", dave)
                              .status()
                              .message()),
              HasSubstr("labels:"));
  EXPECT_THAT(
      std::string(service_->createToken(acme_admin, {}, 3600, 5, "r", dave).status().message()),
      HasSubstr("uses:"));
  EXPECT_THAT(
      std::string(service_
                      ->createToken(acme_admin, {}, 3600, 1, "r",
                                    OperatorTokenSpec{.name = "frank", .role = {}, .hosts = ""})
                      .status()
                      .message()),
      HasSubstr("role"));
  EXPECT_THAT(std::string(service_
                              ->createToken(acme_admin, {}, 3600, 1, "r",
                                            OperatorTokenSpec{.name = "bob@beta",
                                                              .role = v1::OPERATOR_ROLE_ADMIN,
                                                              .hosts = ""})
                              .status()
                              .message()),
              HasSubstr("operator: invalid value"));
  // In tenant default the name stays as asked.
  auto plain = service_->createToken(
      admin_, {}, 3600, 1, "r",
      OperatorTokenSpec{.name = "grace", .role = v1::OPERATOR_ROLE_RESPONDER, .hosts = ""});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->token.operator_name(), "grace");
}

// An operator renews its own certificate: same name and certificate role, whatever tenant it
// chose; answered once an interval (a quarter of the validity when that is shorter than ten
// minutes); audited.
TEST_F(EnrollmentTest, AnOperatorRenewsItsOwnCertificateOnceAnInterval) {
  EnrollmentService short_lived(
      clock_, *real_, EnrollmentOptions{.ca = ca_, .agent_validity = std::chrono::seconds(120)});
  EXPECT_EQ(short_lived.minRenewalInterval(), std::chrono::seconds(30));
  Caller dave{
      .audit_name = "dave@acme", .is_operator = true, .cert_serial = "0A", .role = Role::kNone};
  dave.tenant_refusal =
      absl::FailedPreconditionError("has roles in tenants acme, beta: choose one");
  auto req = createKeyAndCsr("dave");
  ASSERT_TRUE(req.ok());
  auto cert = short_lived.renewOperator(dave, req->csr_pem);
  ASSERT_TRUE(cert.ok()) << cert.status();
  auto id = identityFromCertPem(*cert);
  EXPECT_EQ(id->kind, PeerKind::kOperator);
  EXPECT_EQ(id->name, "dave@acme");
  EXPECT_EQ(id->role, Role::kNone);
  EXPECT_EQ(id->not_after_unix - id->not_before_unix, 150);  // 30 s early for clock skew
  EXPECT_TRUE(checkIdentityFiles(ca_.cert_pem, *cert, req->key_pem).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(short_lived.renewOperator(dave, req->csr_pem).status()));
  clock_.advance(std::chrono::seconds(31));
  EXPECT_TRUE(short_lived.renewOperator(dave, req->csr_pem).ok());
  const Caller agent{.audit_name = "agent:web-01", .is_operator = false};
  EXPECT_TRUE(absl::IsPermissionDenied(short_lived.renewOperator(agent, req->csr_pem).status()));
  const auto rows = audit("operator-renew");
  ASSERT_EQ(rows.size(), 3U);
  EXPECT_EQ(rows[0].operator_name, "dave@acme");
  EXPECT_THAT(rows[0].detail, HasSubstr("serial 0A -> " + id->serial));
}

}  // namespace
}  // namespace bulkhead::controller
