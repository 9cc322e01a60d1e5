#include "common/pki/pki.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/certificate.h"
#include "common/identity.h"

namespace bulkhead {
namespace {

TEST(Pki, IssuedCertificatesCarryTheIdentity) {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok()) << ca.status();
  CertRequest agent{.kind = PeerKind::kAgent, .name = "web-03"};
  auto a = issueCert(*ca, agent);
  ASSERT_TRUE(a.ok()) << a.status();
  auto id = identityFromCertPem(a->cert_pem);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->kind, PeerKind::kAgent);
  EXPECT_EQ(id->name, "web-03");

  CertRequest op{.kind = PeerKind::kOperator, .name = "alice", .role = Role::kResponder};
  auto o = issueCert(*ca, op);
  ASSERT_TRUE(o.ok());
  auto oid = identityFromCertPem(o->cert_pem);
  ASSERT_TRUE(oid.ok());
  EXPECT_EQ(oid->kind, PeerKind::kOperator);
  EXPECT_EQ(oid->role, Role::kResponder);
}

// Enrollment: the server's key signs its request; the CA issues for that key and the identity
// the request names, whatever the request's own subject says.
TEST(Pki, IssuesForAServersOwnKeyFromItsRequest) {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto req = createKeyAndCsr("claims-to-be-db-01");
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_NE(req->csr_pem.find("BEGIN CERTIFICATE REQUEST"), std::string::npos);
  auto cert =
      issueCertForCsr(*ca, req->csr_pem, CertRequest{.kind = PeerKind::kAgent, .name = "web-03"});
  ASSERT_TRUE(cert.ok()) << cert.status();
  // The key stayed with the server and matches the certificate; the CA signed it.
  EXPECT_TRUE(checkIdentityFiles(ca->cert_pem, *cert, req->key_pem).ok());
  auto id = identityFromCertPem(*cert);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->kind, PeerKind::kAgent);
  EXPECT_EQ(id->name, "web-03");  // not the request's subject

  // Another server's key does not go with it.
  auto other = createKeyAndCsr("x");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(checkIdentityFiles(ca->cert_pem, *cert, other->key_pem).ok());
}

TEST(Pki, RefusesRequestsThatAreNotSignedByTheirKeyOrNotP256) {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok());
  const CertRequest agent{.kind = PeerKind::kAgent, .name = "web-03"};
  auto message = [&](const std::string& csr) {
    auto c = issueCertForCsr(*ca, csr, agent);
    EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << c.status();
    return std::string(c.status().message());
  };
  EXPECT_EQ(message("not a request"), "csr: not a PEM certificate signing request");
  // A request whose body was altered after signing: its signature no longer verifies.
  auto req = createKeyAndCsr("web-03");
  ASSERT_TRUE(req.ok());
  std::string tampered = req->csr_pem;
  const size_t body = tampered.find('\n') + 40;
  tampered[body] = tampered[body] == 'A' ? 'B' : 'A';
  const std::string why = message(tampered);
  EXPECT_TRUE(why == "csr: its signature does not verify with its own key" ||
              why == "csr: not a PEM certificate signing request")
      << why;
  // An RSA key (made with the openssl library directly) is refused.
  EVP_PKEY* rsa = EVP_RSA_gen(2048);
  ASSERT_NE(rsa, nullptr);
  X509_REQ* r = X509_REQ_new();
  X509_REQ_set_pubkey(r, rsa);
  ASSERT_TRUE(X509_REQ_sign(r, rsa, EVP_sha256()));
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_REQ(bio, r);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  const std::string rsa_csr(data, static_cast<size_t>(len));
  BIO_free(bio);
  X509_REQ_free(r);
  EVP_PKEY_free(rsa);
  EXPECT_EQ(message(rsa_csr), "csr: the key must be ECDSA P-256");
}

TEST(Pki, CertificateSha256IsTheDerDigest) {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok());
  auto pin = certificateSha256(ca->cert_pem);
  ASSERT_TRUE(pin.ok());
  EXPECT_EQ(pin->size(), 64U);
  EXPECT_EQ(*pin, *certificateSha256(ca->cert_pem));
  auto other = createCa("test-ca", std::chrono::hours(24));
  EXPECT_NE(*pin, *certificateSha256(other->cert_pem));
  EXPECT_FALSE(certificateSha256("junk").ok());
}

TEST(Pki, RejectsInvalidNames) {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok());
  for (const char* bad : {"", "-x", "a b", "x/y", "a;b"}) {
    CertRequest r{.kind = PeerKind::kAgent, .name = bad};
    auto c = issueCert(*ca, r);
    EXPECT_FALSE(c.ok()) << bad;
  }
}

TEST(Identity, ReadsTheControllersIpAddressesFromItsCertificate) {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok());
  CertRequest ctl{.kind = PeerKind::kController,
                  .name = "bulkhead-controller",
                  .dns_names = {"ctl.example"},
                  .ip_addresses = {"10.0.0.5", "fd77::1"}};
  auto c = issueCert(*ca, ctl);
  ASSERT_TRUE(c.ok()) << c.status();
  auto ips = certificateIpAddresses(c->cert_pem);
  ASSERT_TRUE(ips.ok()) << ips.status();
  EXPECT_EQ(*ips, (std::vector<std::string>{"10.0.0.5", "fd77::1"}));
  // DNS names only: no address.
  auto agent = issueCert(*ca, CertRequest{.kind = PeerKind::kAgent, .name = "web-03"});
  ASSERT_TRUE(agent.ok());
  auto none = certificateIpAddresses(agent->cert_pem);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(certificateIpAddresses("not a certificate").ok());
}

// A controller holding the CA's key renews its own certificate: the same name, DNS names,
// addresses and length, for the same key, so agents and operators verify it as before.
TEST(Identity, AControllerCertificateIsReissuedAlikeForTheSameKey) {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok());
  for (const auto validity : {std::chrono::seconds(120), std::chrono::seconds(86400 * 90)}) {
    CertRequest ctl{.kind = PeerKind::kController,
                    .name = "bulkhead-controller",
                    .dns_names = {"ctl.example"},
                    .ip_addresses = {"10.77.0.1", "fd77::1"},
                    .validity = validity};
    auto old = issueCert(*ca, ctl);
    ASSERT_TRUE(old.ok()) << old.status();
    auto next = reissueControllerCert(*ca, old->cert_pem, old->key_pem);
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_TRUE(checkIdentityFiles(ca->cert_pem, *next, old->key_pem).ok());
    auto a = identityFromCertPem(old->cert_pem);
    auto b = identityFromCertPem(*next);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(b->kind, PeerKind::kController);
    EXPECT_EQ(b->name, "bulkhead-controller");
    EXPECT_NE(b->serial, a->serial);
    EXPECT_EQ(b->not_after_unix - b->not_before_unix, a->not_after_unix - a->not_before_unix);
    EXPECT_EQ(*certificateIpAddresses(*next), (std::vector<std::string>{"10.77.0.1", "fd77::1"}));
  }
  auto agent = issueCert(*ca, CertRequest{.kind = PeerKind::kAgent, .name = "web-03"});
  ASSERT_TRUE(agent.ok());
  EXPECT_FALSE(reissueControllerCert(*ca, agent->cert_pem, agent->key_pem).ok());
}

TEST(Identity, RejectsCaAndGarbage) {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok());
  EXPECT_FALSE(identityFromCertPem(ca->cert_pem).ok());   // OU=ca is not a peer kind
  EXPECT_FALSE(identityFromCertPem("not a cert").ok());
}

TEST(Pki, SerialsAreNormalizedAsOpensslPrintsThem) {
  EXPECT_EQ(normalizeSerial("0a:1b:2c").value_or("?"), "0A1B2C");
  EXPECT_EQ(normalizeSerial("0x0A1B2C").value_or("?"), "0A1B2C");
  EXPECT_EQ(normalizeSerial("a1b2c").value_or("?"), "0A1B2C");
  for (const char* bad : {"", "xyz", "12 34", "0x"}) EXPECT_FALSE(normalizeSerial(bad).ok()) << bad;
  auto ca = createCa("test-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok());
  auto leaf = issueCert(*ca, CertRequest{.kind = PeerKind::kAgent, .name = "web-01"});
  ASSERT_TRUE(leaf.ok());
  auto id = identityFromCertPem(leaf->cert_pem);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(normalizeSerial(id->serial).value_or("?"), id->serial);
}

TEST(Identity, DnsNames) {
  for (const char* good : {"bulkhead-controller", "ctl.example.org", "a", "x1.y2"}) {
    EXPECT_TRUE(isValidDnsName(good)) << good;
  }
  for (const char* bad : {"", "a_b", "a..b", ".a", "a.", "-a", "a-", "a b", "*.x", "10.0.0.5/24",
                          "a:b"}) {
    EXPECT_FALSE(isValidDnsName(bad)) << bad;
  }
  EXPECT_FALSE(isValidDnsName(std::string(64, 'a')));
}

}  // namespace
}  // namespace bulkhead
