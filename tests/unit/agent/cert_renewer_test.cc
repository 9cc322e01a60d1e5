// CertRenewer against a real identity directory and fakes for the stream: it asks only when
// the certificate nears its end, writes only a renewal that checks out (this host, this key,
// the fleet CA, a later end), and reconnects to use it.
#include "agent/daemon/cert_renewer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "common/certificate.h"
#include "common/pki/pki.h"
#include "common/tls/tls.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;
namespace v1 = bulkhead::v1;
using std::chrono::hours;

class CertRenewerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bh-renew-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    ca_ = *createCa("fleet", hours(24 * 365));
    auto agent = issueCert(
        ca_, CertRequest{.kind = PeerKind::kAgent, .name = "web-01", .validity = hours(24 * 10)});
    ASSERT_TRUE(agent.ok());
    key_pem_ = agent->key_pem;
    cert_pem_ = agent->cert_pem;
    ASSERT_TRUE(writeIdentity(dir_, ca_.cert_pem, agent->cert_pem, agent->key_pem, false).ok());
    now_ = identityFromCertPem(agent->cert_pem)->not_after_unix - int64_t{10} * 24 * 3600;
  }
  void TearDown() override { fs::remove_all(dir_); }

  CertRenewer renewer(hours renew_before = hours(24 * 30)) {
    return CertRenewer(
        CertRenewer::Options{
            .identity_dir = dir_, .host_id = "web-01", .renew_before = renew_before},
        CertRenewer::Deps{.send =
                              [this](const v1::AgentMessage& m) {
                                sent_.push_back(m);
                                return true;
                              },
                          .reconnect = [this](const std::string&) { ++reconnects_; },
                          .now_unix = [this] { return now_; }});
  }
  // What the controller would answer for the request sent.
  v1::CertificateRenewal answerFor(const v1::AgentMessage& m, const std::string& name = "web-01",
                                   hours validity = hours(24 * 365)) {
    v1::CertificateRenewal r;
    r.set_request_id(m.renew().request_id());
    auto cert =
        issueCertForCsr(ca_, m.renew().csr_pem(),
                        CertRequest{.kind = PeerKind::kAgent, .name = name, .validity = validity});
    EXPECT_TRUE(cert.ok()) << cert.status();
    r.set_cert_pem(*cert);
    return r;
  }
  std::string certOnDisk() { return *readFile(dir_ / "tls.crt"); }

  fs::path dir_;
  CertAndKey ca_;
  std::string key_pem_, cert_pem_;
  int64_t now_ = 0;
  std::vector<v1::AgentMessage> sent_;
  int reconnects_ = 0;
};

TEST_F(CertRenewerTest, AsksOnlyWhenTheCertificateEndsWithinRenewBefore) {
  auto far = renewer(hours(24 * 5));  // 10 days left, renew within 5: not yet
  EXPECT_FALSE(far.onConnected());
  EXPECT_TRUE(sent_.empty());
  auto near = renewer(hours(24 * 30));
  EXPECT_TRUE(near.onConnected());
  ASSERT_EQ(sent_.size(), 1U);
  ASSERT_TRUE(sent_[0].has_renew());
  EXPECT_NE(sent_[0].renew().csr_pem().find("CERTIFICATE REQUEST"), std::string::npos);
}

TEST_F(CertRenewerTest, ARenewalThatChecksOutReplacesTheCertificateKeepsTheKeyAndReconnects) {
  auto r = renewer();
  ASSERT_TRUE(r.onConnected());
  const v1::CertificateRenewal answer = answerFor(sent_[0]);
  EXPECT_TRUE(r.onRenewal(answer));
  EXPECT_EQ(certOnDisk(), answer.cert_pem());
  EXPECT_EQ(*readFile(dir_ / "tls.key"), key_pem_);
  EXPECT_EQ(reconnects_, 1);
  auto loaded = loadIdentity(dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();  // a consistent directory
  EXPECT_FALSE(r.onRenewal(answer));            // answered once; a replay does nothing
  EXPECT_EQ(reconnects_, 1);
}

TEST_F(CertRenewerTest, RefusalsAndRenewalsThatDoNotCheckOutWriteNothing) {
  auto r = renewer();
  ASSERT_TRUE(r.onConnected());
  v1::CertificateRenewal refused;
  refused.set_request_id(sent_[0].renew().request_id());
  refused.set_error("certificate renewal is off on this controller");
  EXPECT_FALSE(r.onRenewal(refused));

  ASSERT_TRUE(r.onConnected());
  EXPECT_FALSE(r.onRenewal(answerFor(sent_[1], "db-01")));  // another host

  ASSERT_TRUE(r.onConnected());
  EXPECT_FALSE(r.onRenewal(answerFor(sent_[2], "web-01", hours(24))));  // ends sooner

  ASSERT_TRUE(r.onConnected());
  v1::CertificateRenewal other_key = answerFor(sent_[3]);
  auto stranger = createKeyAndCsr("web-01");
  other_key.set_cert_pem(*issueCertForCsr(ca_, stranger->csr_pem,
                                          CertRequest{.kind = PeerKind::kAgent, .name = "web-01"}));
  EXPECT_FALSE(r.onRenewal(other_key));  // not this key

  ASSERT_TRUE(r.onConnected());
  auto other_ca = createCa("other", hours(24));
  v1::CertificateRenewal foreign;
  foreign.set_request_id(sent_[4].renew().request_id());
  foreign.set_cert_pem(*issueCertForCsr(*other_ca, sent_[4].renew().csr_pem(),
                                        CertRequest{.kind = PeerKind::kAgent, .name = "web-01"}));
  EXPECT_FALSE(r.onRenewal(foreign));  // not the fleet CA

  v1::CertificateRenewal unasked = answerFor(sent_[4]);
  unasked.set_request_id(999);
  EXPECT_FALSE(r.onRenewal(unasked));

  EXPECT_EQ(certOnDisk(), cert_pem_);
  EXPECT_EQ(reconnects_, 0);
}

}  // namespace
}  // namespace bulkhead::agent
