// `bulkhead pki`: revocation into a signed CRL, certificate lifetimes, SAN validation and the
// controller-name file every identity directory carries.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli.h"
#include "common/pki/pki.h"
#include "common/tls/tls.h"
#include "tests/unit/cli/cli_run.h"

namespace bulkhead::cli {
namespace {

namespace fs = std::filesystem;

using clitest::run;

int64_t nowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class PkiCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bulkhead-pki-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string pki() const { return (dir_ / "pki").string(); }
  PeerIdentity identityIn(const fs::path& sub) {
    auto id = loadIdentity(dir_ / "pki" / sub);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? id->self : PeerIdentity{};
  }
  // The serials listed by the CRL in `file`, checked against the fleet CA.
  std::set<std::string> crlSerials(const fs::path& file) {
    auto crl = readFile(file);
    auto ca = readFile(dir_ / "pki" / "ca" / "ca.crt");
    EXPECT_TRUE(crl.ok() && ca.ok());
    if (!crl.ok() || !ca.ok()) return {};
    auto serials = revokedSerials(*crl, *ca);
    EXPECT_TRUE(serials.ok()) << serials.status();
    return serials.ok() ? *serials : std::set<std::string>{};
  }
  fs::path dir_;
};

TEST_F(PkiCommandsTest, RevokeByNameListsEveryCertificateOfThatName) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  ASSERT_EQ(run({"pki", "issue", "operator", "--name", "alice", "--dir", pki()}).code, kOk);
  PeerIdentity first = identityIn("operators/alice");
  ASSERT_EQ(run({"pki", "issue", "operator", "--name", "alice", "--dir", pki(), "--out",
                 (dir_ / "alice-2").string()})
                .code,
            kOk);
  auto second = loadIdentity(dir_ / "alice-2");
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(run({"pki", "issue", "agent", "--host-id", "web-01", "--dir", pki()}).code, kOk);
  PeerIdentity agent = identityIn("agents/web-01");

  auto r = run({"pki", "revoke", "--dir", pki(), "--name", "alice", "--reason", "laptop stolen"});
  ASSERT_EQ(r.code, kOk) << r.err;
  EXPECT_NE(r.out.find(first.serial), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(second->self.serial), std::string::npos) << r.out;

  auto serials = crlSerials(dir_ / "pki" / "ca" / "crl.pem");
  EXPECT_EQ(serials, (std::set<std::string>{first.serial, second->self.serial}));
  EXPECT_EQ(crlSerials(dir_ / "pki" / "controller" / "crl.pem"), serials)
      << "the controller's identity directory gets the same CRL";
  EXPECT_EQ(serials.count(agent.serial), 0u) << "other identities stay valid";

  auto record = readFile(dir_ / "pki" / "ca" / "revoked.json");
  ASSERT_TRUE(record.ok());
  auto doc = nlohmann::json::parse(*record);
  ASSERT_EQ(doc.size(), 2u);
  EXPECT_EQ(doc[0]["reason"], "laptop stolen");
  EXPECT_EQ(doc[0]["name"], "alice");

  r = run({"pki", "revoke", "--dir", pki(), "--name", "alice", "--reason", "again"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("already revoked"), std::string::npos) << r.err;
}

TEST_F(PkiCommandsTest, RevokeBySerialNamesOnlyThatCertificate) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  ASSERT_EQ(run({"pki", "issue", "agent", "--host-id", "web-01", "--dir", pki()}).code, kOk);
  ASSERT_EQ(run({"pki", "issue", "agent", "--host-id", "web-02", "--dir", pki()}).code, kOk);
  PeerIdentity web1 = identityIn("agents/web-01");
  PeerIdentity web2 = identityIn("agents/web-02");
  // As a person copies it from `openssl x509 -serial` or `openssl x509 -text` (lower case,
  // colons).
  std::string typed;
  for (size_t i = 0; i < web1.serial.size(); ++i) {
    if (i > 0 && i % 2 == 0) typed += ':';
    typed += static_cast<char>(std::tolower(static_cast<unsigned char>(web1.serial[i])));
  }
  auto r = run({"pki", "revoke", "--dir", pki(), "--serial", typed, "--reason", "INC-7"});
  ASSERT_EQ(r.code, kOk) << r.err;
  EXPECT_NE(r.out.find("agent web-01"), std::string::npos) << r.out;
  EXPECT_EQ(crlSerials(dir_ / "pki" / "ca" / "crl.pem"), std::set<std::string>{web1.serial});

  // A second revocation keeps the first in the new CRL.
  ASSERT_EQ(run({"pki", "revoke", "--dir", pki(), "--serial", web2.serial, "--reason", "x"}).code,
            kOk);
  EXPECT_EQ(crlSerials(dir_ / "pki" / "ca" / "crl.pem"),
            (std::set<std::string>{web1.serial, web2.serial}));
}

// A certificate the controller issued (an enrollment, a renewal) was never in this directory:
// revoked by its serial and host id, into the same CRL.
TEST_F(PkiCommandsTest, RevokeACertificateTheControllerIssuedBySerialAndHostId) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  auto r = run({"pki", "revoke", "--dir", pki(), "--serial", "7C24E323", "--reason", "x"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("add --issued-by-controller HOST_ID"), std::string::npos) << r.err;
  r = run({"pki", "revoke", "--dir", pki(), "--name", "web-07", "--issued-by-controller", "web-07",
           "--reason", "x"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("only with --serial"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "pki" / "ca" / "crl.pem"));

  r = run({"pki", "revoke", "--dir", pki(), "--serial", "7c:24:e3:23", "--issued-by-controller",
           "web-07", "--reason", "INC-9 host compromised"});
  ASSERT_EQ(r.code, kOk) << r.err;
  EXPECT_NE(r.out.find("revoked agent web-07 (serial 7C24E323)"), std::string::npos) << r.out;
  EXPECT_EQ(crlSerials(dir_ / "pki" / "ca" / "crl.pem"), std::set<std::string>{"7C24E323"});
  EXPECT_EQ(crlSerials(dir_ / "pki" / "controller" / "crl.pem"), std::set<std::string>{"7C24E323"});
  r = run({"pki", "revoke", "--dir", pki(), "--serial", "7C24E323", "--issued-by-controller",
           "web-07", "--reason", "again"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("already revoked"), std::string::npos) << r.err;

  // An operator the controller enrolled in a tenant (`bulkhead enroll`): NAME@TENANT, with
  // --kind operator; the same name as a host id is refused, saying so.
  r = run({"pki", "revoke", "--dir", pki(), "--serial", "0A0B0C0D", "--issued-by-controller",
           "carl@acme", "--reason", "laptop stolen"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("add --kind operator"), std::string::npos) << r.err;
  r = run({"pki", "revoke", "--dir", pki(), "--serial", "0A0B0C0D", "--issued-by-controller",
           "carl@acme", "--kind", "operator", "--reason", "laptop stolen"});
  ASSERT_EQ(r.code, kOk) << r.err;
  EXPECT_NE(r.out.find("revoked operator carl@acme (serial 0A0B0C0D)"), std::string::npos) << r.out;
  EXPECT_EQ(crlSerials(dir_ / "pki" / "ca" / "crl.pem"),
            (std::set<std::string>{"7C24E323", "0A0B0C0D"}));
}

TEST_F(PkiCommandsTest, RevokeOfUnknownNameOrSerialIsAClearErrorAndWritesNothing) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  auto r = run({"pki", "revoke", "--dir", pki(), "--name", "mallory", "--reason", "x"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--name: no certificate named \"mallory\""), std::string::npos) << r.err;
  r = run({"pki", "revoke", "--dir", pki(), "--serial", "0123ABCD", "--reason", "x"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--serial: no certificate with serial 0123ABCD"), std::string::npos)
      << r.err;
  r = run({"pki", "revoke", "--dir", pki(), "--serial", "xyz", "--reason", "x"});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--serial: invalid value \"xyz\""), std::string::npos) << r.err;
  r = run({"pki", "revoke", "--dir", pki(), "--name", "admin", "--serial", "01", "--reason", "x"});
  EXPECT_EQ(r.code, kUsage);
  r = run({"pki", "revoke", "--dir", pki(), "--name", "admin", "--reason", ""});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_FALSE(fs::exists(dir_ / "pki" / "ca" / "crl.pem"));
  EXPECT_FALSE(fs::exists(dir_ / "pki" / "ca" / "revoked.json"));
}

TEST_F(PkiCommandsTest, ValidForSetsTheLifetimeAndOperatorsDefaultToNinetyDays) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  const int64_t now = nowUnix();
  const int64_t day = 86400;
  // pki init's admin is an operator: the short default too.
  EXPECT_NEAR(identityIn("operators/admin").not_after_unix - now, 90 * day, 120);
  ASSERT_EQ(run({"pki", "issue", "operator", "--name", "bob", "--dir", pki()}).code, kOk);
  EXPECT_NEAR(identityIn("operators/bob").not_after_unix - now, 90 * day, 120);
  ASSERT_EQ(run({"pki", "issue", "agent", "--host-id", "web-01", "--dir", pki()}).code, kOk);
  EXPECT_NEAR(identityIn("agents/web-01").not_after_unix - now, 825 * day, 120);
  auto r =
      run({"pki", "issue", "agent", "--host-id", "web-02", "--dir", pki(), "--valid-for", "10d"});
  ASSERT_EQ(r.code, kOk) << r.err;
  EXPECT_NEAR(identityIn("agents/web-02").not_after_unix - now, 10 * day, 120);

  for (const char* bad : {"0s", "10x", "30s", "4000d"}) {
    r = run({"pki", "issue", "operator", "--name", "carol", "--dir", pki(), "--valid-for", bad});
    EXPECT_EQ(r.code, kUsage) << bad;
    EXPECT_NE(r.err.find("--valid-for"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir_ / "pki" / "operators" / "carol"));
}

TEST_F(PkiCommandsTest, ReplaceRotatesAnIdentityInPlace) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki()}).code, kOk);
  ASSERT_EQ(run({"pki", "issue", "agent", "--host-id", "web-01", "--dir", pki()}).code, kOk);
  PeerIdentity before = identityIn("agents/web-01");
  auto r = run({"pki", "issue", "agent", "--host-id", "web-01", "--dir", pki()});
  EXPECT_EQ(r.code, kUsage);
  EXPECT_NE(r.err.find("--replace"), std::string::npos) << r.err;
  ASSERT_EQ(run({"pki", "issue", "agent", "--host-id", "web-01", "--dir", pki(), "--replace"}).code,
            kOk);
  EXPECT_NE(identityIn("agents/web-01").serial, before.serial);
  // Both certificates stay findable for `pki revoke --name`.
  r = run({"pki", "revoke", "--dir", pki(), "--name", "web-01", "--reason", "x"});
  ASSERT_EQ(r.code, kOk) << r.err;
  EXPECT_NE(r.out.find(before.serial), std::string::npos) << r.out;
}

TEST_F(PkiCommandsTest, InitValidatesSubjectAltNamesAndWritesNothingOnError) {
  struct Case {
    std::vector<std::string> flags;
    std::string field;
  };
  for (const auto& c : std::vector<Case>{
           {{"--controller-ip", "10.0.0.256"}, "--controller-ip"},
           {{"--controller-ip", "10.0.0.5/24"}, "--controller-ip"},
           {{"--controller-ip", "ctl.example.org"}, "--controller-ip"},
           {{"--controller-name", "ctl_1.example.org"}, "--controller-name"},
           {{"--controller-name", "ctl..example.org"}, "--controller-name"},
           {{"--controller-name", "ctl-.example.org"}, "--controller-name"},
           {{"--controller-name", "10.0.0.5/24"}, "--controller-name"},
           {{"--controller-dns", "bad name"}, "--controller-dns"},
           {{"--controller-dns", "*.example.org"}, "--controller-dns"},
       }) {
    std::vector<std::string> args = {"pki", "init", "--dir", pki()};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    auto r = run(args);
    EXPECT_EQ(r.code, kUsage) << c.flags[1];
    EXPECT_NE(r.err.find(c.field + ": invalid value \"" + c.flags[1] + "\""), std::string::npos)
        << r.err;
    EXPECT_FALSE(fs::exists(dir_ / "pki")) << c.flags[1] << ": nothing is written on bad input";
  }
  auto r = run({"pki", "init", "--dir", pki(), "--controller-name", "ctl.example.org",
                "--controller-dns", "bulkhead.example.org", "--controller-ip", "fd77::1"});
  EXPECT_EQ(r.code, kOk) << r.err;
}

TEST_F(PkiCommandsTest, ControllerNameIsStoredWithEveryIdentityAndUsedAsTheDefault) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki(), "--controller-name", "ctl.example.org"}).code, kOk);
  ASSERT_EQ(run({"pki", "issue", "agent", "--host-id", "web-01", "--dir", pki()}).code, kOk);
  ASSERT_EQ(run({"pki", "issue", "operator", "--name", "bob", "--dir", pki(), "--out",
                 (dir_ / "bob").string()})
                .code,
            kOk);
  for (const fs::path& dir : {dir_ / "pki" / "controller", dir_ / "pki" / "operators" / "admin",
                              dir_ / "pki" / "agents" / "web-01", dir_ / "bob"}) {
    auto id = loadIdentity(dir);
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_EQ(id->controller_name, "ctl.example.org") << dir;
  }
  // An identity directory without the file (made by an older bulkhead) has no default.
  fs::remove(dir_ / "bob" / "controller-name");
  auto bob = loadIdentity(dir_ / "bob");
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(bob->controller_name, "");
  // A damaged file is an error naming it, not a silent fallback.
  std::ofstream(dir_ / "bob" / "controller-name") << "bad name\n";
  auto bad = loadIdentity(dir_ / "bob");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("controller-name"), std::string::npos);
}

TEST_F(PkiCommandsTest, IssueControllerRotatesWithTheSameNameAndAddresses) {
  ASSERT_EQ(run({"pki", "init", "--dir", pki(), "--controller-name", "ctl.example.org",
                 "--controller-ip", "10.77.0.1"})
                .code,
            kOk);
  const fs::path ctl = dir_ / "pki" / "controller";
  auto before = loadIdentity(ctl);
  ASSERT_TRUE(before.ok()) << before.status();
  // Without --replace the identity in place is kept.
  EXPECT_EQ(run({"pki", "issue", "controller", "--dir", pki()}).code, kUsage);
  ASSERT_EQ(run({"pki", "issue", "controller", "--dir", pki(), "--replace"}).code, kOk);
  auto after = loadIdentity(ctl);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_NE(after->self.serial, before->self.serial);
  EXPECT_EQ(after->self.kind, PeerKind::kController);
  EXPECT_EQ(after->self.name, "ctl.example.org");
  EXPECT_EQ(after->controller_name, "ctl.example.org");
  EXPECT_EQ(*certificateIpAddresses(after->cert_pem), std::vector<std::string>{"10.77.0.1"});
  EXPECT_TRUE(checkIdentityFiles(after->ca_pem, after->cert_pem, after->key_pem).ok());
  // New addresses when given; a bad one is refused naming it.
  ASSERT_EQ(run({"pki", "issue", "controller", "--dir", pki(), "--replace", "--controller-ip",
                 "10.77.0.2", "--controller-ip", "fd77::2"})
                .code,
            kOk);
  EXPECT_EQ(*certificateIpAddresses(loadIdentity(ctl)->cert_pem),
            (std::vector<std::string>{"10.77.0.2", "fd77::2"}));
  auto bad = run({"pki", "issue", "controller", "--dir", pki(), "--replace", "--controller-ip",
                  "10.77.0"});
  EXPECT_EQ(bad.code, kUsage);
  EXPECT_NE(bad.err.find("--controller-ip: invalid value \"10.77.0\""), std::string::npos)
      << bad.err;
}

}  // namespace
}  // namespace bulkhead::cli
