// The controller's own certificate replaced while it serves (RotatingServerCredentials):
// connections made afterwards get the new certificate; a replacement that is wrong in any way
// is refused and the server keeps serving with the certificate it had.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "bulkhead/v1/enrollment.grpc.pb.h"
#include "common/certificate.h"
#include "common/pki/pki.h"
#include "tests/unit/controller/server_harness.h"

namespace bulkhead::controller::testing {
namespace {

class RotationTest : public ServerTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-live-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    live_dir_ = tmpl;
    ServerTest::SetUp();
  }
  void TearDown() override {
    ServerTest::TearDown();
    rotating_.reset();
    std::error_code ec;
    fs::remove_all(live_dir_, ec);
  }
  void configure(ServerOptions& o) override {
    auto r = RotatingServerCredentials::create(controller_id_, live_dir_ / "tls");
    ASSERT_TRUE(r.ok()) << r.status();
    rotating_ = *std::move(r);
    o.credentials = rotating_->credentials();
  }
  // The serial of the certificate the controller presents to a new connection; empty when
  // the call fails.
  std::string presentedSerial() {
    auto stub = op(Role::kViewer, "viewer");  // a new channel, so a new handshake
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::ListHostsResponse resp;
    if (!stub->ListHosts(&ctx, v1::ListHostsRequest(), &resp).ok()) return "";
    auto pems = ctx.auth_context()->FindPropertyValues("x509_pem_cert");
    if (pems.empty()) return "";
    auto id = identityFromCertPem(std::string(pems.front().data(), pems.front().size()));
    return id.ok() ? id->serial : "";
  }

  fs::path live_dir_;
  std::unique_ptr<RotatingServerCredentials> rotating_;
};

TEST_F(RotationTest, ANewCertificateIsPresentedWithoutARestart) {
  EXPECT_EQ(presentedSerial(), controller_id_.self.serial);
  const IdentityFiles next = pki_.identity(PeerKind::kController, "controller");
  ASSERT_NE(next.self.serial, controller_id_.self.serial);
  auto changed = rotating_->replace(next);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_TRUE(eventually([&] { return presentedSerial() == next.self.serial; }));
  EXPECT_EQ(rotating_->current().serial, next.self.serial);
  // The same files again: nothing to do.
  auto again = rotating_->replace(next);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(*again);
  // Agents verify the new certificate the same way: a stream still comes online.
  auto a = online("h1");
  EXPECT_TRUE(listedOnline("h1"));
}

// How a controller holding the CA's key renews its own certificate: the same key, a new
// certificate, presented on both of its listeners, the enrollment port's (no client
// certificate) built first as the controller builds them. (gRPC 1.51 stops pushing the identity
// when two credentials of different watch sets share one provider: this caught it.)
TEST_F(RotationTest, ARenewedCertificateForTheSameKeyIsPresentedOnBothListeners) {
  auto live = RotatingServerCredentials::create(controller_id_, live_dir_ / "both");
  ASSERT_TRUE(live.ok()) << live.status();
  v1::Enrollment::CallbackService unanswered;  // a server needs a service
  std::vector<std::unique_ptr<grpc::Server>> servers;
  std::vector<int> ports;
  for (const auto& credentials :
       {(*live)->credentialsWithoutClientCertificates(), (*live)->credentials()}) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.RegisterService(&unanswered);
    builder.AddListeningPort("127.0.0.1:0", credentials, &port);
    servers.push_back(builder.BuildAndStart());
    ASSERT_NE(servers.back(), nullptr);
    ports.push_back(port);
  }
  const IdentityFiles client = pki_.identity(PeerKind::kOperator, "viewer");
  // The serial presented on `port`: the handshake completes even though the call is refused.
  auto presented = [&](int port) -> std::string {
    grpc::SslCredentialsOptions tls{.pem_root_certs = client.ca_pem,
                                    .pem_private_key = client.key_pem,
                                    .pem_cert_chain = client.cert_pem};
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride(controller_id_.self.name);
    auto stub = v1::Enrollment::NewStub(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(port), grpc::SslCredentials(tls), args));
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::GetCaCertificateResponse resp;
    (void)stub->GetCaCertificate(&ctx, v1::GetCaCertificateRequest(), &resp);
    auto pems = ctx.auth_context()->FindPropertyValues("x509_pem_cert");
    if (pems.empty()) return "";
    auto id = identityFromCertPem(std::string(pems.front().data(), pems.front().size()));
    return id.ok() ? id->serial : "";
  };
  for (int round = 0; round < 2; ++round) {
    // As in a controller: the live identity has been served a while (the watchers read it).
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    const std::string before = (*live)->current().serial;
    EXPECT_EQ(presented(ports[0]), before);
    EXPECT_EQ(presented(ports[1]), before);
    auto cert = reissueControllerCert(pki_.ca(), controller_id_.cert_pem, controller_id_.key_pem);
    ASSERT_TRUE(cert.ok()) << cert.status();
    IdentityFiles next = controller_id_;
    next.cert_pem = *cert;
    next.self = *identityFromCertPem(*cert);
    auto changed = (*live)->replace(next);
    ASSERT_TRUE(changed.ok()) << changed.status();
    EXPECT_TRUE(*changed);
    for (int port : ports) {
      EXPECT_TRUE(eventually([&] { return presented(port) == next.self.serial; }))
          << "round " << round << ", port " << port << ": still " << presented(port);
    }
  }
  for (auto& server : servers) server->Shutdown();
}

TEST_F(RotationTest, AWrongReplacementIsRefusedAndTheServerKeepsItsCertificate) {
  const IdentityFiles good = pki_.identity(PeerKind::kController, "controller");
  auto expectRefused = [&](const IdentityFiles& bad, const std::string& words) {
    auto r = rotating_->replace(bad);
    ASSERT_FALSE(r.ok()) << words;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status();
    EXPECT_EQ(rotating_->current().serial, controller_id_.self.serial);
  };
  IdentityFiles wrong_key = good;
  wrong_key.key_pem = pki_.identity(PeerKind::kController, "controller").key_pem;
  expectRefused(wrong_key, "not the key of the certificate");
  expectRefused(pki_.identity(PeerKind::kController, "other-name"), "\"other-name\"");
  expectRefused(pki_.identity(PeerKind::kAgent, "controller"), "not a controller certificate");
  Pki other_ca;
  expectRefused(other_ca.identity(PeerKind::kController, "controller"), "ca.crt");
  IdentityFiles foreign_signed = other_ca.identity(PeerKind::kController, "controller");
  foreign_signed.ca_pem = controller_id_.ca_pem;
  expectRefused(foreign_signed, "not signed by the CA");
  IdentityFiles garbage = good;
  garbage.cert_pem = "not a certificate";
  expectRefused(garbage, "tls.crt");
  // Still serving with the certificate it started with, a second later (one refresh).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(presentedSerial(), controller_id_.self.serial);
}

}  // namespace
}  // namespace bulkhead::controller::testing
