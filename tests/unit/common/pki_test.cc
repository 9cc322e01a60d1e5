#include "common/tls/pki.h"

#include <gtest/gtest.h>

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
