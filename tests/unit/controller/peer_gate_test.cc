// The PeerGate: revoked certificates are refused by serial, others pass; expiry is judged
// against the configured warning window.
#include "controller/rpc/peer_gate.h"

#include <gtest/gtest.h>

#include "common/certificate.h"
#include "common/pki/pki.h"
#include "fake_clock.h"

namespace bulkhead::controller {
namespace {

PeerIdentity issued(const CertAndKey& ca, PeerKind kind, const std::string& name,
                    std::chrono::seconds validity) {
  auto leaf = issueCert(ca, CertRequest{.kind = kind, .name = name, .validity = validity});
  EXPECT_TRUE(leaf.ok()) << leaf.status();
  auto id = identityFromCertPem(leaf->cert_pem);
  EXPECT_TRUE(id.ok()) << id.status();
  return *id;
}

TEST(PeerGate, RefusesRevokedCertificatesFromTheCrl) {
  auto ca = createCa("test-ca", std::chrono::hours(24 * 365));
  ASSERT_TRUE(ca.ok());
  PeerIdentity alice = issued(*ca, PeerKind::kOperator, "alice", std::chrono::hours(24 * 90));
  PeerIdentity web = issued(*ca, PeerKind::kAgent, "web-01", std::chrono::hours(24 * 90));
  auto crl = createCrl(*ca, {{alice.serial, 1'700'000'000}}, 1'700'000'000, std::chrono::hours(24));
  ASSERT_TRUE(crl.ok()) << crl.status();
  auto serials = revokedSerials(*crl, ca->cert_pem);
  ASSERT_TRUE(serials.ok()) << serials.status();

  FakeClock clock(1'700'000'000'000);
  PeerGate gate(clock, std::chrono::hours(24 * 30));
  EXPECT_TRUE(gate.admit(alice).ok()) << "nothing revoked before the list is set";
  gate.setRevoked(*serials);
  auto refused = gate.admit(alice);
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(refused.message().find("\"alice\""), absl::string_view::npos);
  EXPECT_NE(refused.message().find(alice.serial), absl::string_view::npos);
  EXPECT_NE(refused.message().find("revoked"), absl::string_view::npos);
  EXPECT_TRUE(gate.admit(web).ok());
  gate.setRevoked({});
  EXPECT_TRUE(gate.admit(alice).ok()) << "a reload replaces the list";
}

TEST(PeerGate, CrlFromAnotherCaOrAlteredIsRejected) {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  auto other = createCa("other-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok() && other.ok());
  auto crl = createCrl(*other, {{"0A1B", 1'700'000'000}}, 1'700'000'000, std::chrono::hours(24));
  ASSERT_TRUE(crl.ok());
  EXPECT_FALSE(revokedSerials(*crl, ca->cert_pem).ok());
  EXPECT_FALSE(revokedSerials("not a crl", ca->cert_pem).ok());
}

TEST(PeerGate, ExpiresSoonWithinTheWarningWindow) {
  FakeClock clock(1'700'000'000'000);
  PeerGate gate(clock, std::chrono::hours(24 * 30));
  const int64_t now = 1'700'000'000;
  EXPECT_TRUE(gate.expiresSoon(now + int64_t{10} * 86400));
  EXPECT_TRUE(gate.expiresSoon(now - 1));
  EXPECT_FALSE(gate.expiresSoon(now + int64_t{31} * 86400));
}

TEST(PeerGate, ExpiringCertificatesAreKeptOnceEachForTheirAuditRows) {
  FakeClock clock(1'700'000'000'000);
  PeerGate gate(clock, std::chrono::hours(24 * 30));
  const PeerIdentity soon{.kind = PeerKind::kAgent,
                          .name = "web-01",
                          .serial = "0A",
                          .not_after_unix = 1'700'000'000 + 86400};
  PeerIdentity later = soon;
  later.serial = "0B";
  later.not_after_unix = 1'700'000'000 + int64_t{90} * 86400;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(gate.admit(soon).ok());
    EXPECT_TRUE(gate.admit(later).ok());
  }
  auto taken = gate.takeExpiring();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].serial, "0A");
  EXPECT_TRUE(gate.takeExpiring().empty());
  EXPECT_TRUE(gate.admit(soon).ok());
  EXPECT_TRUE(gate.takeExpiring().empty()) << "once per certificate";
  // A flush that failed puts them back.
  gate.restoreExpiring(std::move(taken));
  EXPECT_EQ(gate.takeExpiring().size(), 1u);
}

}  // namespace
}  // namespace bulkhead::controller
