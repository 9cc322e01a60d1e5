#include "controller/core/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bulkhead::controller {
namespace {

using std::chrono::milliseconds;

const std::vector<std::string> kRequired = {"--listen", "10.77.0.1:7443", "--identity", "/id",
                                            "--data-dir", "/data"};

std::vector<std::string> with(std::vector<std::string> extra) {
  std::vector<std::string> args = kRequired;
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(ControllerFlags, DefaultsAndRequired) {
  auto cmd = parseControllerFlags(kRequired);
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  const auto& c = cmd->config;
  EXPECT_EQ(c.listen.host, "10.77.0.1");
  EXPECT_EQ(c.listen.port, 7443);
  EXPECT_EQ(c.identity_dir, "/id");
  EXPECT_EQ(c.data_dir, "/data");
  EXPECT_EQ(c.heartbeat_interval, milliseconds(5000));
  EXPECT_EQ(c.heartbeat_timeout, milliseconds(15000));
  EXPECT_EQ(c.selector_limit, 10u);
  EXPECT_EQ(c.log_format, "text");
  EXPECT_TRUE(c.policy_dir.empty());
}

TEST(ControllerFlags, AuditKeyDefaultsToTheIdentityDirectory) {
  auto cmd = parseControllerFlags(kRequired);
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_EQ(cmd->config.audit_key, "/id/audit.key");
  cmd = parseControllerFlags(with({"--audit-key", "/etc/bulkhead/audit.key"}));
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_EQ(cmd->config.audit_key, "/etc/bulkhead/audit.key");
  cmd = parseControllerFlags(with({"--audit-key", ""}));
  ASSERT_FALSE(cmd.ok());
  EXPECT_NE(std::string(cmd.status().message()).find("--audit-key"), std::string::npos);
}

TEST(ControllerFlags, StoreIsSqliteInTheDataDirUnlessAPostgresUrlIsGiven) {
  auto cmd = parseControllerFlags(kRequired);
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_TRUE(cmd->config.store.empty());
  cmd = parseControllerFlags(with({"--store", "postgresql://bh@db1/bulkhead?sslmode=require"}));
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_EQ(cmd->config.store, "postgresql://bh@db1/bulkhead?sslmode=require");
  EXPECT_EQ(cmd->config.evidence_dir, "/data/evidence");
  cmd = parseControllerFlags(with({"--evidence-dir", "/mnt/shared/evidence"}));
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_EQ(cmd->config.evidence_dir, "/mnt/shared/evidence");
  for (const char* bad : {"", "/var/lib/bulkhead/controller.db", "mysql://db1/x"}) {
    cmd = parseControllerFlags(with({"--store", bad}));
    ASSERT_FALSE(cmd.ok()) << bad;
    EXPECT_THAT(std::string(cmd.status().message()),
                ::testing::HasSubstr("--store: want postgresql://"));
  }
}

TEST(ControllerFlags, AllFlags) {
  auto cmd = parseControllerFlags(with({"--policy-dir",
                                        "/p",
                                        "--heartbeat-interval",
                                        "1s",
                                        "--heartbeat-timeout",
                                        "2500ms",
                                        "--selector-limit",
                                        "3",
                                        "--evidence-idle-timeout",
                                        "90s",
                                        "--approval-expiry",
                                        "2s",
                                        "--log-format",
                                        "json",
                                        "--log-level",
                                        "debug",
                                        "--advertise",
                                        "10.77.0.1:7443",
                                        "--advertise",
                                        "[fd77::1]:7443"}));
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  const auto& c = cmd->config;
  EXPECT_EQ(c.policy_dir, "/p");
  EXPECT_EQ(c.evidence_idle_timeout, std::chrono::seconds(90));
  EXPECT_EQ(c.approval_expiry, std::chrono::seconds(2));
  EXPECT_EQ(c.heartbeat_interval, milliseconds(1000));
  EXPECT_EQ(c.heartbeat_timeout, milliseconds(2500));
  EXPECT_EQ(c.selector_limit, 3u);
  EXPECT_EQ(c.log_format, "json");
  ASSERT_EQ(c.advertise.size(), 2u);
  EXPECT_EQ(c.advertise[1].host, "fd77::1");
}

TEST(ControllerFlags, CrowdSec) {
  auto cmd = parseControllerFlags(kRequired);
  ASSERT_TRUE(cmd.ok());
  EXPECT_TRUE(cmd->config.crowdsec_lapi.empty());  // off by default
  cmd = parseControllerFlags(with({"--crowdsec-lapi", "http://10.77.0.1:8080",
                                   "--crowdsec-key-file", "/k", "--crowdsec-ca", "/ca",
                                   "--crowdsec-interval", "250ms"}));
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_EQ(cmd->config.crowdsec_lapi, "http://10.77.0.1:8080");
  EXPECT_EQ(cmd->config.crowdsec_key_file, "/k");
  EXPECT_EQ(cmd->config.crowdsec_ca, "/ca");
  EXPECT_EQ(cmd->config.crowdsec_interval, std::chrono::milliseconds(250));
  struct Case {
    std::vector<std::string> args;
    const char* names;
  };
  for (const Case& c :
       {Case{{"--crowdsec-lapi", "http://x"}, "--crowdsec-key-file"},
        Case{{"--crowdsec-key-file", "/k"}, "--crowdsec-key-file: needs --crowdsec-lapi"},
        Case{{"--crowdsec-interval", "1s"}, "--crowdsec-interval: needs --crowdsec-lapi"},
        Case{{"--crowdsec-lapi", "http://x", "--crowdsec-key-file", "/k", "--crowdsec-interval",
              "10ms"},
             "--crowdsec-interval"}}) {
    cmd = parseControllerFlags(with(c.args));
    ASSERT_FALSE(cmd.ok());
    EXPECT_NE(cmd.status().message().find(c.names), std::string::npos) << cmd.status();
  }
}

TEST(ControllerFlags, MissingRequiredFlagIsNamed) {
  for (const char* flag : {"--listen", "--identity", "--data-dir"}) {
    std::vector<std::string> args;
    for (size_t i = 0; i < kRequired.size(); i += 2) {
      if (kRequired[i] != flag) {
        args.push_back(kRequired[i]);
        args.push_back(kRequired[i + 1]);
      }
    }
    auto cmd = parseControllerFlags(args);
    ASSERT_FALSE(cmd.ok()) << flag;
    EXPECT_EQ(cmd.status().message(), std::string(flag) + ": required");
  }
}

TEST(ControllerFlags, BadValuesNameTheFlagAndValue) {
  struct Case {
    std::vector<std::string> args;
    std::string expect;   // substring of the error
  };
  const std::vector<Case> cases = {
      {with({"--heartbeat-interval", "5x"}), "--heartbeat-interval"},
      {with({"--heartbeat-timeout", "0s"}), "--heartbeat-timeout"},
      {with({"--evidence-idle-timeout", "soon"}), "--evidence-idle-timeout"},
      {with({"--evidence-idle-timeout", "0s"}), "--evidence-idle-timeout"},
      {with({"--approval-expiry", "soon"}), "--approval-expiry"},
      {with({"--approval-expiry", "0s"}), "--approval-expiry"},
      {with({"--heartbeat-interval", "10s", "--heartbeat-timeout", "5s"}),
       "must be longer than --heartbeat-interval"},
      {with({"--selector-limit", "0"}), "--selector-limit: invalid value \"0\""},
      {with({"--selector-limit", "ten"}), "--selector-limit: invalid value \"ten\""},
      {with({"--log-format", "xml"}), "--log-format: invalid value \"xml\""},
      {with({"--advertise", "controller.example:7443"}), "--advertise"},
      {with({"--advertise", "0.0.0.0:7443"}), "--advertise"},
      {with({"--advertise", "10.77.0.1"}), "--advertise"},
      {with({"--grpc-arg", "grpc.http2.bdp_probe"}), "--grpc-arg: invalid value"},
      {with({"--grpc-arg", "grpc.http2.bdp_probe=off"}), "expected grpc.NAME=INTEGER"},
      {with({"--grpc-arg", "http2.bdp_probe=0"}), "--grpc-arg: invalid value"},
      {with({"--grpc-arg", "grpc.x=1; rm"}), "--grpc-arg: invalid value"},
      {{"--listen", "10.77.0.1", "--identity", "/id", "--data-dir", "/d"}, "--listen"},
      {{"--listen", "10.77.0.1:99999", "--identity", "/id", "--data-dir", "/d"}, "--listen"},
  };
  for (const auto& c : cases) {
    auto cmd = parseControllerFlags(c.args);
    ASSERT_FALSE(cmd.ok()) << c.expect;
    EXPECT_NE(std::string(cmd.status().message()).find(c.expect), std::string::npos)
        << cmd.status().message();
  }
}

TEST(ControllerFlags, GrpcArgumentsAreNameAndIntegerInOrder) {
  auto none = parseControllerFlags(with({}));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->config.grpc_args.empty());
  auto two = parseControllerFlags(
      with({"--grpc-arg", "grpc.http2.bdp_probe=0", "--grpc-arg", "grpc.tsi.max_frame_size=4096"}));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->config.grpc_args,
            (std::vector<std::pair<std::string, int>>{{"grpc.http2.bdp_probe", 0},
                                                      {"grpc.tsi.max_frame_size", 4096}}));
}

TEST(ControllerFlags, MetricsListenerIsOffByDefault) {
  auto off = parseControllerFlags(kRequired);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->config.metrics_listen.has_value());
  auto on = parseControllerFlags(with({"--metrics-listen", "127.0.0.1:9464"}));
  ASSERT_TRUE(on.ok()) << on.status();
  ASSERT_TRUE(on->config.metrics_listen.has_value());
  EXPECT_EQ(on->config.metrics_listen->host, "127.0.0.1");
  EXPECT_EQ(on->config.metrics_listen->port, 9464);
  auto v6 = parseControllerFlags(with({"--metrics-listen", "[::1]:9464"}));
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->config.metrics_listen->host, "::1");
  auto bad = parseControllerFlags(with({"--metrics-listen", "localhost"}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()).rfind("--metrics-listen", 0), 0U) << bad.status();
}

TEST(ControllerFlags, EnrollmentIsOffByDefaultAndNeedsTheCaKey) {
  auto off = parseControllerFlags(kRequired);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE(off->config.enroll_listen.empty());
  EXPECT_EQ(off->config.enroll_validity, std::chrono::hours(24 * 365));
  auto no_key = parseControllerFlags(with({"--enroll-listen", "10.77.0.1:7444"}));
  EXPECT_EQ(std::string(no_key.status().message()).rfind("--enroll-listen: needs --ca-key", 0), 0U)
      << no_key.status();
  auto on = parseControllerFlags(with({"--enroll-listen", "10.77.0.1:7444", "--ca-key",
                                       "/pki/ca/ca.key", "--enroll-validity", "90d"}));
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_EQ(on->config.enroll_listen, "10.77.0.1:7444");
  EXPECT_EQ(on->config.ca_key, "/pki/ca/ca.key");
  EXPECT_EQ(on->config.enroll_validity, std::chrono::hours(24 * 90));
  auto bad = parseControllerFlags(with({"--enroll-validity", "2y"}));
  EXPECT_EQ(std::string(bad.status().message()).rfind("--enroll-validity", 0), 0U) << bad.status();
}

TEST(ControllerFlags, WebhookListenerIsOffByDefaultAndNeedsItsOwnCertificate) {
  auto off = parseControllerFlags(kRequired);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE(off->config.webhook_listen.empty());
  EXPECT_EQ(off->config.webhook_body_limit, 1U << 20);
  EXPECT_EQ(off->config.webhook_rate, 120U);
  auto no_cert = parseControllerFlags(with({"--webhook-listen", "10.77.0.1:9443"}));
  EXPECT_EQ(std::string(no_cert.status().message())
                .rfind("--webhook-listen: needs --webhook-cert and --webhook-key", 0),
            0U)
      << no_cert.status();
  auto on = parseControllerFlags(
      with({"--webhook-listen", "10.77.0.1:9443", "--webhook-cert", "/w.crt", "--webhook-key",
            "/w.key", "--webhook-body-limit", "64KiB", "--webhook-rate", "30"}));
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_EQ(on->config.webhook_listen, "10.77.0.1:9443");
  EXPECT_EQ(on->config.webhook_cert, "/w.crt");
  EXPECT_EQ(on->config.webhook_body_limit, 64U << 10);
  EXPECT_EQ(on->config.webhook_rate, 30U);
  for (auto [flag, value] :
       {std::pair{"--webhook-rate", "0"}, std::pair{"--webhook-body-limit", "lots"}}) {
    auto bad = parseControllerFlags(with({flag, value}));
    EXPECT_EQ(std::string(bad.status().message()).rfind(flag, 0), 0U) << bad.status();
  }
}

TEST(ControllerFlags, UnknownFlagIsOneClearError) {
  auto cmd = parseControllerFlags(with({"--bogus", "1"}));
  ASSERT_FALSE(cmd.ok());
  EXPECT_NE(std::string(cmd.status().message()).find("bogus"), std::string::npos);
  EXPECT_EQ(std::string(cmd.status().message()).find('\n'), std::string::npos);
}

TEST(ControllerFlags, HelpNeedsNothingElse) {
  auto cmd = parseControllerFlags({"--help"});
  ASSERT_TRUE(cmd.ok());
  EXPECT_TRUE(cmd->help);
  EXPECT_NE(cmd->usage.find("--listen"), std::string::npos);
}

TEST(ControllerFlags, DialableEndpoints) {
  auto wildcard = parseControllerFlags(
      {"--listen", "0.0.0.0:7443", "--identity", "/i", "--data-dir", "/d"});
  ASSERT_TRUE(wildcard.ok());
  EXPECT_TRUE(dialableEndpoints(wildcard->config, {}).empty());

  auto both = parseControllerFlags({"--listen", "10.77.0.1:7443", "--identity", "/i",
                                    "--data-dir", "/d", "--advertise", "10.77.0.1:7443",
                                    "--advertise", "[fd77::1]:7443"});
  ASSERT_TRUE(both.ok());
  auto eps = dialableEndpoints(both->config, {});
  ASSERT_EQ(eps.size(), 2u);   // the duplicate of --listen is listed once
  EXPECT_EQ(eps[0].host, "10.77.0.1");
  EXPECT_EQ(eps[1].host, "fd77::1");

  auto named = parseControllerFlags(
      {"--listen", "localhost:7443", "--identity", "/i", "--data-dir", "/d"});
  ASSERT_TRUE(named.ok());
  EXPECT_TRUE(dialableEndpoints(named->config, {}).empty());
}

TEST(ControllerFlags, TheCertificatesAddressesAreDialableWithoutAdvertise) {
  // The README's quick start: --listen 0.0.0.0:7443 and a certificate from
  // `pki init --controller-ip 10.0.0.5`.
  auto wildcard =
      parseControllerFlags({"--listen", "0.0.0.0:7443", "--identity", "/i", "--data-dir", "/d"});
  ASSERT_TRUE(wildcard.ok());
  auto eps = dialableEndpoints(wildcard->config, {"10.0.0.5", "fd77:0::1"});
  ASSERT_EQ(eps.size(), 2u);
  EXPECT_EQ(eps[0].host, "10.0.0.5");
  EXPECT_EQ(eps[0].port, 7443);
  EXPECT_EQ(eps[1].host, "fd77:0::1");
  EXPECT_EQ(eps[1].port, 7443);

  // With --advertise the certificate's addresses are kept too; the same address written
  // differently is listed once.
  auto advertised = parseControllerFlags({"--listen", "[::]:7443", "--identity", "/i", "--data-dir",
                                          "/d", "--advertise", "[fd77::1]:7443"});
  ASSERT_TRUE(advertised.ok());
  eps = dialableEndpoints(advertised->config, {"fd77:0:0::1", "10.0.0.5"});
  ASSERT_EQ(eps.size(), 2u);
  EXPECT_EQ(eps[0].host, "fd77::1");
  EXPECT_EQ(eps[1].host, "10.0.0.5");
}

}  // namespace
}  // namespace bulkhead::controller

namespace bulkhead::controller {
namespace {

TEST(ControllerFlags, MaxEvidenceBytes) {
  auto cmd = parseControllerFlags(kRequired);
  ASSERT_TRUE(cmd.ok());
  EXPECT_EQ(cmd->config.max_evidence_bytes, uint64_t{8} << 30);
  for (auto [text, bytes] : {std::pair{"1048576", uint64_t{1} << 20},
                             std::pair{"512MiB", uint64_t{512} << 20},
                             std::pair{"2GiB", uint64_t{2} << 30}, std::pair{"1TiB", uint64_t{1} << 40}}) {
    cmd = parseControllerFlags(with({"--max-evidence-bytes", text}));
    ASSERT_TRUE(cmd.ok()) << text << ": " << cmd.status();
    EXPECT_EQ(cmd->config.max_evidence_bytes, bytes) << text;
  }
  for (const char* bad : {"0", "", "12GB", "-1", "1.5GiB", "99999999999999999999"}) {
    cmd = parseControllerFlags(with({"--max-evidence-bytes", bad}));
    ASSERT_FALSE(cmd.ok()) << bad;
    EXPECT_NE(cmd.status().message().find("--max-evidence-bytes"), std::string::npos);
  }
}

TEST(BackupFlags, BothFlagsAreRequiredAndNamed) {
  auto ok = parseBackupFlags({"--data-dir", "/var/lib/bulkhead", "--to", "/backup/b.db"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->data_dir, "/var/lib/bulkhead");
  EXPECT_EQ(ok->to, "/backup/b.db");
  auto no_to = parseBackupFlags({"--data-dir", "/var/lib/bulkhead"});
  ASSERT_FALSE(no_to.ok());
  EXPECT_EQ(no_to.status().message(), "--to: required");
  auto no_dir = parseBackupFlags({"--to", "b.db"});
  ASSERT_FALSE(no_dir.ok());
  EXPECT_EQ(no_dir.status().message(), "--data-dir: required");
  EXPECT_FALSE(parseBackupFlags({"--data-dir", "d", "--to", "b", "--listen", "x"}).ok());
  EXPECT_TRUE(parseBackupFlags({"--help"})->help);
}

TEST(RestoreFlags, TheAuditKeyComesFromTheIdentityUnlessGiven) {
  auto by_identity = parseRestoreFlags({"--from", "b.db", "--data-dir", "/d", "--identity", "/id"});
  ASSERT_TRUE(by_identity.ok()) << by_identity.status();
  EXPECT_EQ(by_identity->audit_key, "/id/audit.key");
  auto by_key = parseRestoreFlags({"--from", "b.db", "--data-dir", "/d", "--audit-key", "/k"});
  ASSERT_TRUE(by_key.ok());
  EXPECT_EQ(by_key->audit_key, "/k");
  auto no_key = parseRestoreFlags({"--from", "b.db", "--data-dir", "/d"});
  ASSERT_FALSE(no_key.ok());
  EXPECT_THAT(std::string(no_key.status().message()),
              ::testing::HasSubstr("--identity or --audit-key: required"));
  EXPECT_EQ(parseRestoreFlags({"--data-dir", "/d", "--identity", "/id"}).status().message(),
            "--from: required");
}

}  // namespace
}  // namespace bulkhead::controller
