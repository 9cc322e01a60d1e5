// bulkhead-controller: builds the real dependencies (flags, logging, identity, SQLite or
// PostgreSQL store, gRPC server) and runs until SIGTERM/SIGINT. Startup failures print one line and
// exit 2.
#include <grpc/support/log.h>
#ifdef BULKHEAD_WITH_TCMALLOC
#include <gperftools/tcmalloc.h>
#endif
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "common/certificate.h"
#include "common/format.h"
#include "common/logging.h"
#include "common/pki/pki.h"
#include "common/runtime.h"
#include "common/scheduler.h"
#include "common/tls/tls.h"
#include "common/version.h"
#include "controller/core/blocks.h"
#include "controller/core/config.h"
#include "controller/crowdsec/poller.h"
#include "controller/metrics/exposition.h"
#include "controller/metrics/listener.h"
#include "controller/notify/channels.h"
#include "controller/notify/notifier.h"
#include "controller/notify/transport.h"
#include "controller/rpc/peer_gate.h"
#include "controller/rpc/server.h"
#include "controller/rpc/system_clock.h"
#include "controller/service/audit.h"
#include "controller/service/policies.h"
#include "controller/service/record_text.h"
#include "controller/store/audit_key.h"
#include "controller/store/backup.h"
#include "controller/store/data_dir.h"
#include "controller/store/evidence_files.h"
#include "controller/store/postgres_active_lock.h"
#include "controller/store/postgres_bus.h"
#include "controller/store/postgres_store.h"
#include "controller/store/sqlite_store.h"
#include "controller/webhook/listener.h"
#include "evidence/signing.h"

namespace {

using namespace bulkhead;
using namespace bulkhead::controller;

constexpr int kExitUsage = 2;
// Stopped because another controller is (or may be) active on the shared database
// (postgres_active_lock.h); systemd starts it again as a standby.
constexpr int kExitNotActive = 3;
// The channel of the controllers serving one database at once (Fleet::onReplicaEvent).
constexpr const char* kReplicaChannel = "bulkhead_replicas";
std::atomic<bool> g_grpc_started{false};

int fail(const std::string& message) {
  std::cerr << "bulkhead-controller: " << message << "\n";
  return kExitUsage;
}

// gRPC's own log lines go through spdlog. Before the server is up they are debug only, so a
// startup failure prints the one line we write, not gRPC's internals.
void grpcLog(gpr_log_func_args* args) {
  spdlog::level::level_enum level = spdlog::level::debug;
  if (g_grpc_started && args->severity == GPR_LOG_SEVERITY_ERROR) level = spdlog::level::warn;
  spdlog::log(level, "grpc: {}", args->message);
}

// How often a controller holding the CA's key looks at its own certificate's end.
constexpr std::chrono::seconds kSelfRenewalCheck{5};

// "12 exemption sets, 2 tenants with their own" for the start and reload lines.
std::string describePolicies(const TenantPolicies& policies) {
  return fmt::format("{} exemption sets, {} tenant{} with their own", policies.all().size(),
                     policies.tenants.size(), policies.tenants.size() == 1 ? "" : "s");
}

// Renews the controller's own certificate once it has run two thirds of its time: a new one for
// the live key from the fleet CA (reissueControllerCert: same name, addresses and length),
// presented to new connections at once, and written to IDENTITY_DIR/tls.crt for the next start
// when that directory holds the live key (an operator may have put another identity there for
// a SIGHUP: it is left alone, and the row says so). Audited as controller-renew, the failures
// too, at most one failure a tenth of the certificate's span (a minute at least). Returns
// whether the certificate was replaced.
bool renewOwnCertificateIfDue(RotatingServerCredentials& tls, const CertAndKey& ca,
                              const std::string& identity_dir, Store& store, const Clock& clock) {
  static int64_t last_failure_unix = 0;
  const IdentityFiles live = tls.currentIdentity();  // a copy: replace() changes the live one
  const int64_t now = clock.nowUnixMs() / 1000;
  const int64_t span = live.self.not_after_unix - live.self.not_before_unix;
  if (span <= 0 || live.self.not_after_unix - now > span / 3) return false;
  if (last_failure_unix != 0 && now - last_failure_unix < std::max<int64_t>(60, span / 10)) {
    return false;
  }
  IdentityFiles next = live;
  std::string detail;
  absl::StatusOr<std::string> cert = reissueControllerCert(ca, live.cert_pem, live.key_pem);
  absl::Status done = cert.status();
  if (done.ok()) {
    next.cert_pem = *cert;
    auto fresh = identityFromCertPem(*cert);
    done = fresh.status();
    if (done.ok()) {
      next.self = *fresh;
      detail = fmt::format("serial {} -> {}, not after {}", live.self.serial, fresh->serial,
                           fresh->not_after_unix);
    }
  }
  if (done.ok()) done = tls.replace(next).status();
  if (done.ok()) {
    const std::filesystem::path dir(identity_dir);
    auto on_disk = loadIdentity(dir);
    absl::Status written =
        !on_disk.ok() ? on_disk.status()
        : on_disk->key_pem != live.key_pem
            ? absl::FailedPreconditionError("it holds another key (a SIGHUP would switch to it)")
            : writeFileAtomic(dir / "tls.crt", *cert, 0644);
    if (!written.ok()) {
      detail += fmt::format("; not written to {}: {}", identity_dir, written.message());
    }
    spdlog::info("own certificate renewed: {}", detail);
  } else {
    last_failure_unix = now;
    spdlog::error("own certificate (serial {}, ends {} s from now) not renewed: {}",
                  live.self.serial, live.self.not_after_unix - now, done);
  }
  (void)recordCall(store, clock, AuditActor{.name = "controller"}, kControllerRenewAction,
                   live.self.serial, "", done, detail);
  return done.ok();
}

// The revoked serials of the CRL at `path`, checked against the fleet CA. A missing file
// revokes nothing unless it was named with --crl.
absl::StatusOr<std::set<std::string>> loadRevoked(const std::filesystem::path& path, bool named,
                                                  const std::string& ca_pem) {
  std::error_code ec;
  if (!named && !std::filesystem::exists(path, ec)) return std::set<std::string>{};
  auto pem = readFile(path);
  if (!pem.ok()) return absl::NotFoundError(fmt::format("--crl: {}", pem.status().message()));
  auto serials = revokedSerials(*pem, ca_pem);
  if (!serials.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("--crl: {}: {}", path.string(), serials.status().message()));
  }
  return serials;
}

// The notification channels of POLICY_DIR/notifications/*.yaml (none without a policy dir),
// each secret file checked readable and private now, so a mistake stops the start (or a
// reload) rather than the first delivery.
absl::StatusOr<std::vector<notify::Channel>> loadNotifyChannels(const std::string& policy_dir) {
  if (policy_dir.empty()) return std::vector<notify::Channel>{};
  auto channels = notify::loadChannelDir(policy_dir + "/notifications");
  if (!channels.ok()) return channels.status();
  for (const notify::Channel& c : *channels) {
    for (const auto& [field, path] :
         {std::pair{"secret_file", &c.secret_file}, std::pair{"password_file", &c.password_file}}) {
      if (path->empty()) continue;
      if (auto secret = notify::readSecret(fmt::format("{}: {}", c.file, field), *path);
          !secret.ok()) {
        return secret.status();
      }
    }
  }
  return channels;
}

// The CrowdSec bouncer's fetch from the flags: the API key file must be a regular file no
// other user can read or write (it is a credential); its first line, trimmed, is the key.
absl::StatusOr<crowdsec::Fetch> crowdsecFetch(const ControllerConfig& config) {
  struct stat st {};
  const std::string& path = config.crowdsec_key_file;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        fmt::format("--crowdsec-key-file: {}: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        fmt::format("--crowdsec-key-file: {}: not a regular file", path));
  }
  if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    return absl::PermissionDeniedError(fmt::format(
        "--crowdsec-key-file: {} is accessible to other users (mode {:o}): the bouncer key is "
        "a credential; chmod 600 it",
        path, st.st_mode & 07777));
  }
  auto text = readFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(fmt::format("--crowdsec-key-file: {}", text.status().message()));
  }
  std::string key = text->substr(0, text->find('\n'));
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.front()))) key.erase(0, 1);
  if (key.empty()) {
    return absl::InvalidArgumentError(fmt::format("--crowdsec-key-file: {} is empty", path));
  }
  if (!config.crowdsec_ca.empty() && ::access(config.crowdsec_ca.c_str(), R_OK) != 0) {
    return absl::NotFoundError(
        fmt::format("--crowdsec-ca: {}: {}", config.crowdsec_ca, std::strerror(errno)));
  }
  auto fetch = crowdsec::httpFetch(crowdsec::HttpOptions{
      .url = config.crowdsec_lapi, .api_key = key, .ca_file = config.crowdsec_ca});
  if (!fetch.ok()) {
    return absl::InvalidArgumentError(fmt::format("--crowdsec-lapi: {}", fetch.status().message()));
  }
  return fetch;
}

// `bulkhead-controller backup`: exit 0 with a one-line summary, 1 when the backup failed, 2
// for bad flags.
int runBackup(const std::vector<std::string>& args) {
  ::umask(077);  // the copy holds the audit trail: private like the database
  auto cmd = parseBackupFlags(args);
  if (!cmd.ok()) return fail(fmt::format("backup: {} (see backup --help)", cmd.status()));
  if (cmd->help) {
    std::cout << cmd->usage;
    return 0;
  }
  const std::filesystem::path data_dir(cmd->data_dir);
  auto summary = backupDatabase(data_dir / "controller.db", cmd->to);
  if (!summary.ok()) {
    std::cerr << "bulkhead-controller: backup: " << summary.status().message() << "\n";
    return 1;
  }
  std::cout << fmt::format(
      "backup {}: {} bytes, schema {}, {} audit rows, {} desired states, {} evidence "
      "bundles recorded (copy {} too: its files never change)\n",
      cmd->to, summary->bytes, summary->schema_version, summary->audit_rows,
      summary->desired_states, summary->evidence_bundles, (data_dir / "evidence").string());
  return 0;
}

// `bulkhead-controller restore`: exit 0 with a one-line summary, 1 when nothing was restored,
// 2 for bad flags.
int runRestore(const std::vector<std::string>& args) {
  ::umask(077);
  auto cmd = parseRestoreFlags(args);
  if (!cmd.ok()) return fail(fmt::format("restore: {} (see restore --help)", cmd.status()));
  if (cmd->help) {
    std::cout << cmd->usage;
    return 0;
  }
  auto restoreFailed = [](const absl::Status& s) {
    std::cerr << "bulkhead-controller: restore: " << s.message() << "\n";
    return 1;
  };
  std::error_code ec;
  if (!std::filesystem::is_regular_file(cmd->audit_key, ec)) {
    return restoreFailed(absl::NotFoundError(fmt::format(
        "audit key {} not found: a restore needs the key the backup's audit chain was written "
        "with",
        cmd->audit_key)));
  }
  if (auto s = prepareDataDir(cmd->data_dir); !s.ok()) return restoreFailed(s);
  auto key = loadOrCreateAuditKey(cmd->audit_key, cmd->data_dir);
  if (!key.ok()) return restoreFailed(key.status());
  SystemClock clock;
  AuditEntry row{.at_unix_ms = clock.nowUnixMs(),
                 .operator_name = "controller",
                 .action = kControllerRestoreAction,
                 .target = "all",
                 .reason = cmd->from,
                 .outcome = "ok",
                 .detail = fmt::format("restored from {}", cmd->from)};
  const std::filesystem::path database = std::filesystem::path(cmd->data_dir) / "controller.db";
  auto summary = restoreDatabase(cmd->from, database, {.audit_key = *std::move(key)}, row);
  if (!summary.ok()) return restoreFailed(summary.status());
  std::cout << fmt::format(
      "restored {} into {}: {} audit rows (chain verified), {} desired states, "
      "generations raised by {}; {} evidence bundles recorded: their files belong in {}\n",
      cmd->from, database.string(), summary->copy.audit_rows, summary->states_raised,
      kRestoreGenerationStep, summary->copy.evidence_bundles,
      (std::filesystem::path(cmd->data_dir) / "evidence").string());
  return 0;
}

int run(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "backup") {
    return runBackup(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (argc > 1 && std::string_view(argv[1]) == "restore") {
    return runRestore(std::vector<std::string>(argv + 2, argv + argc));
  }
  if (argc > 1 && std::string_view(argv[1]) == "completion") {
    return completionCommand(std::vector<std::string>(argv + 2, argv + argc),
                             controllerCompletion(), std::cout, std::cerr);
  }
  // Signals are taken synchronously by the main thread: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Everything the controller creates (database, WAL, evidence, audit key) is private.
  ::umask(077);

  auto cmd = parseControllerFlags(std::vector<std::string>(argv + 1, argv + argc));
  if (!cmd.ok()) return fail(fmt::format("{} (see --help)", cmd.status()));
  if (cmd->help) {
    std::cout << cmd->usage;
    return 0;
  }
  if (cmd->version) {
    std::cout << versionLine("bulkhead-controller") << "\n";
    return 0;
  }
  const ControllerConfig& config = cmd->config;
  if (auto s = setupLogging("controller", config.log_format, config.log_level); !s.ok()) {
    return fail(fmt::format("{}", s));
  }
  gpr_set_log_function(grpcLog);

  // The CrowdSec bouncer's flags are checked before anything is created.
  std::optional<crowdsec::Fetch> crowdsec_fetch;
  std::string crowdsec_from;
  if (!config.crowdsec_lapi.empty()) {
    auto fetch = crowdsecFetch(config);
    if (!fetch.ok()) return fail(std::string(fetch.status().message()));
    crowdsec_fetch = *std::move(fetch);
    crowdsec_from = "crowdsec:" + *crowdsec::hostPortOf(config.crowdsec_lapi);
    if (config.policy_dir.empty()) {
      spdlog::warn(
          "--crowdsec-lapi without --policy-dir: no playbook, CrowdSec decisions are "
          "recorded as signals and cause nothing");
    }
  }

  auto identity = loadIdentity(config.identity_dir);
  if (!identity.ok()) return fail(fmt::format("{}", identity.status()));
  if (identity->self.kind != PeerKind::kController) {
    return fail(fmt::format("--identity: {}/tls.crt is an {} certificate, not a controller's",
                            config.identity_dir, peerKindName(identity->self.kind)));
  }
  if (auto s = prepareDataDir(config.data_dir); !s.ok()) return fail(fmt::format("{}", s));
  std::error_code key_ec;
  if (!config.store.empty() && !std::filesystem::exists(config.audit_key, key_ec)) {
    // A key made here would differ from the other controllers': their rows would not verify.
    return fail(fmt::format(
        "--audit-key: {} not found. Every controller on one --store database needs the same "
        "audit key: create it once (openssl rand -hex 32 > FILE; chmod 600 FILE) and copy it "
        "to each",
        config.audit_key));
  }
  auto audit_key = loadOrCreateAuditKey(config.audit_key, config.data_dir);
  if (!audit_key.ok()) return fail(fmt::format("{}", audit_key.status()));
  auto audit_signer = evidence::Signer::fromPem(identity->key_pem, identity->cert_pem);
  if (!audit_signer.ok()) return fail(fmt::format("--identity: {}", audit_signer.status()));
  // On a shared database, one controller is active at a time: wait here as a standby until
  // this one holds the active lock, then (after the takeover delay) load the state and serve.
  std::unique_ptr<PostgresActiveLock> active_lock;
  std::unique_ptr<ActiveLockWatch> active_watch;
  if (!config.store.empty() && config.replica.empty()) {
    active_lock = std::make_unique<PostgresActiveLock>(config.store);
    std::string last_wait;
    for (;;) {
      auto held = active_lock->tryAcquire();
      if (held.ok() && *held) break;
      std::string wait = held.ok() ? "another controller is active on this database"
                                   : std::string(held.status().message());
      if (wait != last_wait) {
        spdlog::info("standby: {}; taking over when it stops (checking every {} ms)", wait,
                     kCheckInterval.count());
        last_wait = wait;
      }
      const timespec pause{.tv_sec = 0, .tv_nsec = kCheckInterval.count() * 1'000'000};
      const int sig = sigtimedwait(&signals, nullptr, &pause);
      if (sig == SIGTERM || sig == SIGINT) {
        spdlog::info("standby: {}: exiting", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        return 0;
      }
    }
    spdlog::info("active: this controller holds the active lock of {}; serving in {} ms",
                 redactedUrl(config.store), kTakeoverDelay.count());
    active_watch = watchActiveLock(active_lock.get(), [](const std::string& reason) {
      // Prompt, not graceful: another controller may be serving these hosts already.
      spdlog::critical("stopping at once: {}", reason);
      spdlog::shutdown();
      std::_Exit(kExitNotActive);
    });
    std::this_thread::sleep_for(kTakeoverDelay);
  }
  absl::StatusOr<std::unique_ptr<SqlStore>> store;
  if (config.store.empty()) {
    store = SqliteStore::create(std::filesystem::path(config.data_dir) / "controller.db",
                                {.audit_key = *std::move(audit_key)});
    if (!store.ok()) return fail(fmt::format("--data-dir: {}", store.status()));
  } else {
    store = PostgresStore::create(config.store, {.audit_key = *std::move(audit_key)});
    if (!store.ok()) return fail(fmt::format("{}", store.status()));
    spdlog::info("store: PostgreSQL {}", redactedUrl(config.store));
  }
  // Several controllers serving at once (--replica): each commits desired states with a notice
  // to the others; the link carries where hosts stream and their agents' answers; the one
  // holding the singleton lease runs the fleet-wide work.
  // Desired states another controller changed are read from the store on a thread of their
  // own: a read waits behind this controller's store writes, which wait for the database's
  // write lock (every controller's writes take turns), and the bus's thread must keep taking
  // the others' notices meanwhile (their "alive" ones above all: 6 s without one, a
  // controller's hosts count as offline). Declared before the bus, which posts to it.
  std::unique_ptr<Scheduler> replica_loads;
  std::unique_ptr<PostgresBus> replica_bus;
  std::unique_ptr<SingletonLease> singleton_lease;
  std::function<bool()> runs_singletons;
  if (!config.replica.empty()) {
    (*store)->announceChangesAs(config.replica);
    active_lock = std::make_unique<PostgresActiveLock>(config.store);
    singleton_lease = std::make_unique<SingletonLease>(active_lock.get(), [](bool leading) {
      spdlog::info(leading ? "replicas: this controller runs the singletons (TTL releases, "
                             "fleet-wide blocks, notifications, the CrowdSec poller)"
                           : "replicas: this controller no longer runs the singletons");
    });
    runs_singletons = [lease = singleton_lease.get()] { return lease->leading(); };
  }

  Policies policies(config.policy_dir);
  if (!config.policy_dir.empty()) {
    if (auto s = policies.reload(); !s.ok()) {
      // Every problem, one per line, each naming its file and line.
      return fail(fmt::format("--policy-dir: {}", s));
    }
    spdlog::info("policies: {} from {}", describePolicies(*policies.current()), config.policy_dir);
  }
  auto notify_channels = loadNotifyChannels(config.policy_dir);
  if (!notify_channels.ok()) return fail(fmt::format("--policy-dir: {}", notify_channels.status()));
  if (!notify_channels->empty()) {
    spdlog::info("notifications: {} channels from {}/notifications", notify_channels->size(),
                 config.policy_dir);
  }
  auto certificate_ips = certificateIpAddresses(identity->cert_pem);
  if (!certificate_ips.ok()) {
    return fail(
        fmt::format("--identity: {}/tls.crt: {}", config.identity_dir, certificate_ips.status()));
  }
  std::vector<bulkhead::v1::Endpoint> endpoints;
  std::string endpoint_list;
  for (const auto& hp : dialableEndpoints(config, *certificate_ips)) {
    bulkhead::v1::Endpoint e;
    e.set_ip(hp.host);
    e.set_port(hp.port);
    endpoints.push_back(e);
    endpoint_list += fmt::format("{}{}", endpoint_list.empty() ? "" : ", ",
                                 hp.host.find(':') != std::string::npos
                                     ? fmt::format("[{}]:{}", hp.host, hp.port)
                                     : fmt::format("{}:{}", hp.host, hp.port));
  }
  if (endpoints.empty()) {
    spdlog::warn(
        "no dialable controller endpoint (--listen {} is not an IP address agents can "
        "dial and the certificate names no IP address): isolation is refused until the "
        "controller runs with --advertise IP:PORT (or a certificate from `pki init "
        "--controller-ip IP`)",
        config.listen_text);
  } else {
    spdlog::info("controller endpoints (kept reachable on isolated hosts, never blocked): {}",
                 endpoint_list);
  }

  SystemClock clock;
  PeerGate gate(clock, config.cert_expiry_warning);
  const bool crl_named = !config.crl_file.empty();
  const std::filesystem::path crl_path =
      crl_named ? std::filesystem::path(config.crl_file)
                : std::filesystem::path(config.identity_dir) / "crl.pem";
  {
    auto revoked = loadRevoked(crl_path, crl_named, identity->ca_pem);
    if (!revoked.ok()) return fail(fmt::format("{}", revoked.status()));
    gate.setRevoked(*std::move(revoked));
    if (gate.revokedCount() > 0) {
      spdlog::info("revocation: {} revoked certificates from {}", gate.revokedCount(),
                   crl_path.string());
    }
  }
  (void)gate.admit(identity->self);  // logs the controller's own certificate near expiry
  ServerOptions options;
  options.containment.endpoints = endpoints;
  options.containment.selector_limit = config.selector_limit;
  options.containment.block_confirm_prefix_v4 = config.block_confirm_prefix_v4;
  options.containment.block_confirm_prefix_v6 = config.block_confirm_prefix_v6;
  if (!config.policy_dir.empty()) {
    // Protected CIDRs (never blocked): POLICY_DIR/guardrails/protected.yaml, optional.
    const auto path = std::filesystem::path(config.policy_dir) / "guardrails" / "protected.yaml";
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
      std::ifstream in(path);
      std::stringstream text;
      text << in.rdbuf();
      if (!in) return fail(fmt::format("--policy-dir: cannot read {}", path.string()));
      auto parsed = parseProtectedCidrs(path.string(), text.str());
      if (!parsed.ok()) return fail(fmt::format("--policy-dir: {}", parsed.status()));
      options.containment.protected_cidrs = *std::move(parsed);
      spdlog::info("guardrails: {} protected CIDRs from {}",
                   options.containment.protected_cidrs.size(), path.string());
    }
  }
  options.policies = &policies;
  options.signals.policy_dir = config.policy_dir;
  options.signals.approval_expiry = config.approval_expiry;
  if (!config.ca_key.empty()) {
    auto ca_key = readFile(config.ca_key);
    if (!ca_key.ok()) return fail(fmt::format("--ca-key: {}", ca_key.status()));
    // The key must be the fleet CA's: a certificate it signs must verify against ca.crt.
    CertAndKey ca{identity->ca_pem, *std::move(ca_key)};
    auto probe = issueCert(ca, CertRequest{.kind = PeerKind::kAgent,
                                           .name = "ca-key-check",
                                           .validity = std::chrono::seconds(3600)});
    if (!probe.ok() || !checkIdentityFiles(ca.cert_pem, probe->cert_pem, probe->key_pem).ok()) {
      return fail(fmt::format("--ca-key: {} is not the key of the fleet CA in {}/ca.crt",
                              config.ca_key, config.identity_dir));
    }
    options.enrollment.ca = std::move(ca);
    options.enrollment.controller_name = identity->self.name;
    options.enrollment.agent_validity =
        std::chrono::duration_cast<std::chrono::seconds>(config.enroll_validity);
    if (!config.enroll_listen.empty()) options.enroll_listen = config.enroll_listen;
    spdlog::info(
        "the fleet CA's key is loaded: agents' certificates are renewed over their "
        "streams{}",
        config.enroll_listen.empty() ? "" : ", new servers enroll with join tokens");
  }
  options.listen = config.listen_text;
  // Idle agent streams are most of this process's memory (README, "Figures").
  if (auto released = releaseIdleTlsBuffersProcessWide(); !released.ok()) {
    spdlog::warn("{}", released.message());
  }
#ifdef BULKHEAD_WITH_TCMALLOC
  spdlog::info("memory: allocator {}", tc_version(nullptr, nullptr, nullptr));
#endif
  auto tls = RotatingServerCredentials::create(*identity,
                                               std::filesystem::path(config.runtime_dir) / "tls");
  if (!tls.ok()) return fail(fmt::format("--runtime-dir: {}", tls.status()));
  options.credentials = (*tls)->credentials();
  if (!options.enroll_listen.empty()) {
    options.enroll_credentials = (*tls)->credentialsWithoutClientCertificates();
  }
  options.fleet.heartbeat_interval = config.heartbeat_interval;
  options.fleet.heartbeat_timeout = config.heartbeat_timeout;
  options.fleet.gate = &gate;
  options.containment.runs_singletons = runs_singletons;
  ControllerServer* serving = nullptr;
  if (!config.replica.empty()) {
    // Notices are handled on the bus's thread once the server is up (serving is set); the bus
    // is stopped before the server.
    replica_loads = std::make_unique<Scheduler>("bh-replica-load");
    replica_bus = std::make_unique<PostgresBus>(
        config.store, std::vector<std::string>{SqlStore::kDesiredChannel, kReplicaChannel},
        kReplicaChannel,
        PostgresBus::Handlers{
            .notice =
                [&serving, &replica_loads](const std::string& channel, const std::string& payload) {
                  if (channel == SqlStore::kDesiredChannel) {
                    replica_loads->post(
                        [&serving, payload] { serving->fleet().onDesiredChanged(payload); });
                  } else {
                    serving->fleet().onReplicaEvent(payload);
                  }
                },
            .connected =
                [&serving, &replica_loads] {
                  replica_loads->post([&serving] { serving->fleet().onReplicaLinkUp(); });
                }});
    options.fleet.replica = config.replica;
    options.fleet.link = replica_bus.get();
  }
  options.channel_args = config.grpc_args;
  for (const auto& [name, value] : config.grpc_args) {
    spdlog::warn("--grpc-arg {}={}: a gRPC channel argument the tests do not cover", name, value);
  }
  options.evidence.dir = config.evidence_dir;
  options.evidence.ca_pem = identity->ca_pem;
  options.evidence.max_bytes = config.max_evidence_bytes;
  options.evidence.host_quota_bytes = config.evidence_host_quota;
  options.evidence.reserve_bytes = config.evidence_reserve;
  options.evidence.max_uploads = config.max_evidence_uploads;
  options.evidence.max_uploads_per_host = config.max_evidence_uploads_per_host;
  options.evidence.idle_timeout = config.evidence_idle_timeout;
  options.audit_signer = *std::move(audit_signer);
  // Metrics: counted from the start; the scrape-time sources read the server, which the
  // listener (started after it, stopped before it) never scrapes before it exists.
  std::atomic<int64_t> controller_not_after_ms{identity->self.not_after_unix * 1000};
  std::unique_ptr<metrics::PrometheusMetrics> prometheus;
  if (config.metrics_listen) {
    const EvidenceFiles evidence_files(options.evidence.dir);
    Store* db = store->get();
    prometheus = std::make_unique<metrics::PrometheusMetrics>(metrics::ScrapeSources{
        .hosts = [&serving] { return serving->fleet().listHosts({}); },
        .blocks_in_force = [&serving,
                            &clock] { return serving->fleet().blocksInForce(clock.nowUnixMs()); },
        .store = [db](int64_t after_id) { return db->figures(after_id); },
        .evidence_free_bytes = [evidence_files] { return evidence_files.availableBytes(); },
        .controller_certificate =
            [&controller_not_after_ms, name = identity->self.name] {
              return metrics::CertificateExpiry{
                  .kind = "controller", .name = name, .not_after_unix_ms = controller_not_after_ms};
            }});
    options.metrics = prometheus.get();
  }
  // Notifications: the audit trail's events, queued in the store and delivered on the
  // notifier's own thread (controller/notify/notifier.h); containment never waits on them.
  notify::NetworkTransport notify_transport({.mail_host = identity->self.name});
  notify::Notifier notifier(**store, clock, notify_transport, *std::move(notify_channels),
                            {.runs = runs_singletons});
  options.notifications = &notifier;
  notifier.start();  // before the server: every row from here on is announced
  auto server = ControllerServer::start(clock, **store, options);
  if (!server.ok()) return fail(fmt::format("{}", server.status()));
  g_grpc_started = true;
  serving = server->get();
  std::unique_ptr<Scheduler> replica_ticks;
  // Whichever way run() returns from here, the link's thread (which calls into the server) and
  // the ticks stop before the server is destroyed.
  absl::Cleanup stop_replicas = [&replica_ticks, &replica_bus, &replica_loads] {
    if (replica_ticks) replica_ticks->stop();
    if (replica_bus) replica_bus->stop();
    if (replica_loads) replica_loads->stop();
  };
  if (replica_bus) {
    replica_bus->start();
    replica_ticks = std::make_unique<Scheduler>("bh-replicas");
    replica_ticks->every(std::chrono::seconds(1), [serving] { serving->fleet().replicaTick(); });
    spdlog::info("replicas: serving as \"{}\" with the other controllers of {}", config.replica,
                 redactedUrl(config.store));
  }
  if (auto s = (*server)->signals().reload(); !s.ok()) {
    return fail(fmt::format("--policy-dir: {}", s));
  }
  if (!config.policy_dir.empty()) {
    spdlog::info("playbooks: {} from {}/playbooks", (*server)->signals().playbookCount(),
                 config.policy_dir);
  }
  // Webhooks: after the playbooks are in force, so the first signal meets them.
  std::unique_ptr<webhook::Listener> webhooks;
  if (!config.webhook_listen.empty()) {
    auto listener =
        webhook::Listener::start(clock, (*server)->integrations(), (*server)->signals(),
                                 webhook::ListenerOptions{.listen = config.webhook_listen,
                                                          .cert_file = config.webhook_cert,
                                                          .key_file = config.webhook_key,
                                                          .body_limit = config.webhook_body_limit,
                                                          .rate_per_minute = config.webhook_rate});
    if (!listener.ok()) return fail(fmt::format("{}", listener.status()));
    webhooks = *std::move(listener);
  }
  // Metrics and health: ready while the store takes a write and the policies are loaded.
  std::unique_ptr<metrics::Listener> metrics_listener;
  if (prometheus) {
    Store* db = store->get();
    auto listener = metrics::Listener::start(metrics::ListenerOptions{
        .listen = *config.metrics_listen,
        .scrape = [&prometheus] { return prometheus->scrape(); },
        .checks =
            [db, &policies, &config] {
              std::vector<metrics::ReadinessCheck> checks;
              checks.push_back({"store", db->probeWrite()});
              if (!config.policy_dir.empty() && policies.current() == nullptr) {
                checks.push_back(
                    {"policies", absl::UnavailableError(fmt::format(
                                     "no exemption sets loaded from {}", config.policy_dir))});
              }
              return checks;
            }});
    if (!listener.ok()) return fail(fmt::format("{}", listener.status()));
    metrics_listener = *std::move(listener);
  }
  // The CrowdSec bouncer: one poller, the only one for its API key (CrowdSec keeps one cursor
  // per key; two controllers must not share one).
  std::unique_ptr<crowdsec::Poller> crowdsec_poller;
  if (crowdsec_fetch) {
    crowdsec_poller = std::make_unique<crowdsec::Poller>(
        (*server)->signals(), crowdsec_from, *std::move(crowdsec_fetch),
        crowdsec::PollerOptions{.interval = config.crowdsec_interval, .runs = runs_singletons});
    crowdsec_poller->start();
    spdlog::info("crowdsec: polling {} every {} ms as {}", config.crowdsec_lapi,
                 config.crowdsec_interval.count(), crowdsec_from);
  }

  std::string host = config.listen.host.find(':') != std::string::npos
                         ? fmt::format("[{}]", config.listen.host)
                         : config.listen.host;
  spdlog::info("listening on {}:{} as controller \"{}\" (data {}, heartbeat {} ms / timeout {} ms)",
               host, (*server)->port(), identity->self.name, config.data_dir,
               config.heartbeat_interval.count(), config.heartbeat_timeout.count());
  AuditEntry start{.at_unix_ms = clock.nowUnixMs(),
                   .operator_name = "controller",
                   .action = kControllerStartAction,
                   .target = fmt::format("{}:{}", host, (*server)->port()),
                   .outcome = "ok"};
  if (auto row = (*store)->appendAudit(start); !row.ok()) {
    spdlog::error("audit: cannot record controller start: {}", row.status());
  }

  // With the CA's key the controller renews its own certificate: checked between signals.
  const bool self_renewal = !options.enrollment.ca.key_pem.empty();
  for (;;) {
    int sig = 0;
    if (self_renewal) {
      timespec wait{.tv_sec = kSelfRenewalCheck.count(), .tv_nsec = 0};
      sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig < 0) {
        if (errno == EAGAIN && renewOwnCertificateIfDue(**tls, options.enrollment.ca,
                                                        config.identity_dir, **store, clock)) {
          (void)gate.admit((*tls)->current());
          controller_not_after_ms = (*tls)->current().not_after_unix * 1000;
        }
        continue;
      }
    } else if (sigwait(&signals, &sig) != 0) {
      continue;
    }
    if (sig == SIGHUP) {
      // The controller's own certificate: a replaced tls.crt/tls.key (`pki issue controller
      // --replace`) is presented to new connections from the next second; a bad one is refused
      // and the one in use stays.
      auto next = loadIdentity(config.identity_dir);
      auto replaced = next.ok() ? (*tls)->replace(*next) : absl::StatusOr<bool>(next.status());
      if (!replaced.ok()) {
        spdlog::error("SIGHUP: certificate not replaced, serial {} stays in use: {}",
                      (*tls)->current().serial, replaced.status());
      } else if (*replaced) {
        spdlog::info("SIGHUP: certificate replaced: new connections get serial {}",
                     (*tls)->current().serial);
        (void)gate.admit((*tls)->current());  // logs it when near expiry
        controller_not_after_ms = (*tls)->current().not_after_unix * 1000;
      }
      if (auto revoked = loadRevoked(crl_path, crl_named, identity->ca_pem); !revoked.ok()) {
        spdlog::error("SIGHUP: revocations not reloaded, the previous {} stay in force: {}",
                      gate.revokedCount(), revoked.status());
      } else {
        gate.setRevoked(*std::move(revoked));
        auto ended = (*server)->fleet().closeRevokedStreams();
        spdlog::info("SIGHUP: {} revoked certificates from {}; {} agent streams ended{}{}",
                     gate.revokedCount(), crl_path.string(), ended.size(),
                     ended.empty() ? "" : ": ", fmt::join(ended, ", "));
      }
      if (config.policy_dir.empty()) {
        spdlog::info("SIGHUP: nothing to reload (no --policy-dir)");
      } else if (auto s = policies.reload(); !s.ok()) {
        spdlog::error("SIGHUP: policies in {} not reloaded, the previous ones stay in force: {}",
                      config.policy_dir, s);
      } else {
        spdlog::info("SIGHUP: policies reloaded: {} from {}", describePolicies(*policies.current()),
                     config.policy_dir);
      }
      if (!config.policy_dir.empty()) {
        if (auto s = (*server)->signals().reload(); !s.ok()) {
          spdlog::error("SIGHUP: playbooks in {} not reloaded, the previous ones stay in force: {}",
                        config.policy_dir, s);
        } else {
          spdlog::info("SIGHUP: playbooks reloaded: {} from {}/playbooks",
                       (*server)->signals().playbookCount(), config.policy_dir);
        }
        if (auto channels = loadNotifyChannels(config.policy_dir); !channels.ok()) {
          spdlog::error(
              "SIGHUP: notification channels in {}/notifications not reloaded, the previous "
              "ones stay in force: {}",
              config.policy_dir, channels.status());
        } else {
          spdlog::info("SIGHUP: notification channels reloaded: {}", channels->size());
          notifier.setChannels(*std::move(channels));
        }
      }
      continue;
    }
    spdlog::info("{}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    break;
  }
  if (metrics_listener) metrics_listener->stop();  // scrapes read the server: stop them first
  if (webhooks) webhooks->stop();  // no new signals from integrations; those taken are answered
  if (crowdsec_poller) crowdsec_poller->stop();
  std::move(stop_replicas).Invoke();  // the link's handlers call into the server
  (*server)->shutdown();
  notifier.stop();  // after the server: the last results' rows are routed at the next start
  AuditEntry stop{.at_unix_ms = clock.nowUnixMs(),
                  .operator_name = "controller",
                  .action = kControllerStopAction,
                  .target = start.target,
                  .outcome = "ok"};
  if (auto row = (*store)->appendAudit(stop); !row.ok()) {
    spdlog::error("audit: cannot record controller stop: {}", row.status());
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bulkhead::tuneProcessRuntime();
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bulkhead-controller: fatal: " << e.what() << "\n";
    return 1;
  }
}
