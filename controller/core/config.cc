#include "controller/core/config.h"

#include <arpa/inet.h>

#include <boost/program_options.hpp>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <tuple>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/text.h"

namespace bulkhead::controller {
namespace po = boost::program_options;

namespace {

bool isIpLiteral(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool isWildcard(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host == "[::]";
}

absl::StatusOr<uint32_t> parsePositive(std::string_view field, const std::string& text) {
  if (text.empty() || text.size() > 9 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return absl::InvalidArgumentError(
        fmt::format("{}: invalid value \"{}\": expected a positive whole number", field, text));
  }
  uint32_t v = static_cast<uint32_t>(std::stoul(text));
  if (v == 0) {
    return absl::InvalidArgumentError(
        fmt::format("{}: invalid value \"{}\": must be at least 1", field, text));
  }
  return v;
}

}  // namespace

namespace {

// "1048576", "512KiB", "64MiB", "8GiB", "1TiB": a positive byte count.
absl::StatusOr<uint64_t> parseByteSize(const char* flag, const std::string& text) {
  size_t digits = text.find_first_not_of("0123456789");
  std::string number = text.substr(0, digits);
  std::string unit = digits == std::string::npos ? "" : text.substr(digits);
  static const std::map<std::string, int> kShift = {{"", 0},     {"B", 0},    {"KiB", 10},
                                                    {"MiB", 20}, {"GiB", 30}, {"TiB", 40}};
  auto shift = kShift.find(unit);
  uint64_t n = 0;
  bool ok = !number.empty() && number.size() <= 15 && shift != kShift.end();
  if (ok) {
    n = std::stoull(number);
    ok = n > 0 && n <= (UINT64_MAX >> shift->second);
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        fmt::format("{}: invalid value \"{}\": use a positive size such as 1048576, 512MiB or 8GiB",
                    flag, text));
  }
  return n << shift->second;
}

// Parses `args` against `desc` and sets `usage` to its help text and `flags` to its flags.
// INVALID_ARGUMENT with program_options' own line (unknown flag, missing value) on an error.
absl::StatusOr<po::variables_map> parseOptions(const po::options_description& desc,
                                               const std::vector<std::string>& args,
                                               std::string& usage, std::vector<ShellFlag>& flags) {
  std::ostringstream text;
  text << desc;
  usage = text.str();
  flags = shellFlagsOf(desc);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(desc).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return absl::InvalidArgumentError(std::string(e.what()));
  }
  return vm;
}

}  // namespace

absl::StatusOr<BackupCommandLine> parseBackupFlags(const std::vector<std::string>& args) {
  BackupCommandLine out;
  po::options_description desc(
      "Usage: bulkhead-controller backup --data-dir DIR --to FILE\n"
      "A consistent copy of the controller's database, taken while it runs (SQLite's online\n"
      "backup). Copy DIR/evidence beside it: bundles never change once stored");
  desc.add_options()("help,h", "print this help and exit")(
      "data-dir", po::value(&out.data_dir)->value_name("DIR"),
      "the controller's --data-dir (required)")("to", po::value(&out.to)->value_name("FILE"),
                                                "the backup to create; never replaced (required)");
  auto vm = parseOptions(desc, args, out.usage, out.flags);
  if (!vm.ok()) return vm.status();
  if (vm->count("help")) {
    out.help = true;
    return out;
  }
  if (out.data_dir.empty()) return absl::InvalidArgumentError("--data-dir: required");
  if (out.to.empty()) return absl::InvalidArgumentError("--to: required");
  return out;
}

absl::StatusOr<RestoreCommandLine> parseRestoreFlags(const std::vector<std::string>& args) {
  RestoreCommandLine out;
  std::string identity;
  po::options_description desc(
      "Usage: bulkhead-controller restore --from FILE --data-dir DIR [--identity DIR | "
      "--audit-key FILE]\n"
      "Installs a `backup` as the database of a stopped controller and raises every host's\n"
      "desired-state generation so agents that saw later changes take the restored state.\n"
      "Copy the backed-up evidence directory into DIR/evidence as well");
  desc.add_options()("help,h", "print this help and exit")(
      "from", po::value(&out.from)->value_name("FILE"), "the backup file (required)")(
      "data-dir", po::value(&out.data_dir)->value_name("DIR"),
      "the controller's --data-dir; must hold no database (required)")(
      "identity", po::value(&identity)->value_name("DIR"),
      "the controller's identity directory, for its audit.key")(
      "audit-key", po::value(&out.audit_key)->value_name("FILE"),
      "the audit chain's key, if not IDENTITY_DIR/audit.key");
  auto vm = parseOptions(desc, args, out.usage, out.flags);
  if (!vm.ok()) return vm.status();
  if (vm->count("help")) {
    out.help = true;
    return out;
  }
  if (out.from.empty()) return absl::InvalidArgumentError("--from: required");
  if (out.data_dir.empty()) return absl::InvalidArgumentError("--data-dir: required");
  if (out.audit_key.empty() && identity.empty()) {
    return absl::InvalidArgumentError(
        "--identity or --audit-key: required (the key the backup's audit chain was written with)");
  }
  if (out.audit_key.empty())
    out.audit_key = (std::filesystem::path(identity) / "audit.key").string();
  return out;
}

absl::StatusOr<ControllerCommandLine> parseControllerFlags(const std::vector<std::string>& args) {
  std::string listen, identity, data_dir, store, replica, evidence_dir, audit_key, runtime_dir,
      policy_dir, hb_interval = "5s", hb_timeout = "15s";
  std::string selector_limit = "10", log_format = "text", log_level = "info";
  std::string block_confirm_v4 = "16", block_confirm_v6 = "48";
  std::string max_evidence_bytes = "8GiB", evidence_host_quota = "32GiB", evidence_reserve = "1GiB";
  std::string max_evidence_uploads = "16", max_evidence_uploads_per_host = "2";
  std::string evidence_idle_timeout = "60s";
  std::string crl_file, cert_expiry_warning = "30d";
  std::string approval_expiry = "1h";
  std::string webhook_listen, webhook_cert, webhook_key;
  std::string enroll_listen, ca_key, enroll_validity = "365d";
  std::string webhook_body_limit = "1MiB", webhook_rate = "120";
  std::string crowdsec_lapi, crowdsec_key_file, crowdsec_ca, crowdsec_interval = "1s";
  std::string metrics_listen;
  std::vector<std::string> advertise, grpc_args;

  po::options_description desc(
      "Usage: bulkhead-controller --listen ADDR:PORT --identity DIR --data-dir DIR [options]\n"
      "  or:  bulkhead-controller backup --data-dir DIR --to FILE\n"
      "  or:  bulkhead-controller restore --from FILE --data-dir DIR --identity DIR\n"
      "  or:  bulkhead-controller completion bash\n\n"
      "backup and restore: see their --help; completion: prints the bash completion script\n\n"
      "options");
  desc.add_options()("help,h", "print this help and exit")("version", "print the version and exit")(
      "listen", po::value(&listen)->value_name("ADDR:PORT"),
      "address to serve agents and operators on (required)")(
      "advertise", po::value(&advertise)->value_name("IP:PORT"),
      "an IP literal and port agents dial (repeatable); always kept reachable on isolated hosts")(
      "grpc-arg", po::value(&grpc_args)->value_name("grpc.NAME=N"),
      "a gRPC channel argument of the listener, e.g. grpc.http2.bdp_probe=0 (repeatable; for "
      "tuning and benchmarks)")(
      "identity", po::value(&identity)->value_name("DIR"),
      "controller identity directory: ca.crt, tls.crt, tls.key (required)")(
      "data-dir", po::value(&data_dir)->value_name("DIR"),
      "state directory, created if missing, kept private (0700) (required)")(
      "store", po::value(&store)->value_name("URL"),
      "where the controller's state lives: postgresql://USER@HOST/DB?... for several "
      "controllers sharing one PostgreSQL database (each needs the same --audit-key); "
      "default: SQLite in --data-dir")(
      "replica", po::value(&replica)->value_name("NAME"),
      "with --store: serve agents and operators at the same time as the database's other "
      "controllers, named NAME (letters, digits, '-', '_'; unique among them); without it one "
      "controller serves at a time and the others wait as standbys")(
      "evidence-dir", po::value(&evidence_dir)->value_name("DIR"),
      "where evidence bundles are stored (default DATA_DIR/evidence); with --store, a "
      "directory every controller of the database mounts (bundles are written once, by "
      "rename)")("audit-key", po::value(&audit_key)->value_name("FILE"),
                 "HMAC key of the audit chain, outside --data-dir; created (0600) if missing "
                 "(default IDENTITY_DIR/audit.key)")(
      "runtime-dir", po::value(&runtime_dir)->value_name("DIR"),
      "private directory (0700) for the live copy of the identity that SIGHUP replaces "
      "(default DATA_DIR/run; the systemd unit: /run/bulkhead-controller)")(
      "policy-dir", po::value(&policy_dir)->value_name("DIR"),
      "exemption set library (policies/*.yaml); reloaded on SIGHUP")(
      "heartbeat-interval", po::value(&hb_interval)->value_name("DUR"),
      "heartbeat interval told to agents (default 5s)")(
      "heartbeat-timeout", po::value(&hb_timeout)->value_name("DUR"),
      "a host without a message for this long is offline (default 15s)")(
      "selector-limit", po::value(&selector_limit)->value_name("N"),
      "isolate/release by selector matching more hosts needs `yes` (default 10)")(
      "block-confirm-prefix-v4", po::value(&block_confirm_v4)->value_name("LEN"),
      "a v4 block wider than /LEN needs `yes` (default 16)")(
      "block-confirm-prefix-v6", po::value(&block_confirm_v6)->value_name("LEN"),
      "a v6 block wider than /LEN needs `yes` (default 48)")(
      "max-evidence-bytes", po::value(&max_evidence_bytes)->value_name("SIZE"),
      "largest evidence bundle accepted from an agent: bytes, or with KiB, MiB, GiB "
      "(default 8GiB)")(
      "evidence-host-quota", po::value(&evidence_host_quota)->value_name("SIZE"),
      "evidence bytes stored (and being uploaded) per host; more is refused (default 32GiB)")(
      "evidence-reserve", po::value(&evidence_reserve)->value_name("SIZE"),
      "free space the evidence file system keeps: an upload that would leave less is refused "
      "(default 1GiB)")("max-evidence-uploads", po::value(&max_evidence_uploads)->value_name("N"),
                        "evidence uploads in progress at once, all hosts (default 16)")(
      "max-evidence-uploads-per-host", po::value(&max_evidence_uploads_per_host)->value_name("N"),
      "evidence uploads in progress at once from one host (default 2)")(
      "evidence-idle-timeout", po::value(&evidence_idle_timeout)->value_name("DUR"),
      "an evidence upload sending nothing for this long is cancelled (default 60s)")(
      "crl", po::value(&crl_file)->value_name("FILE"),
      "CRL of revoked certificates (bulkhead pki revoke); re-read on SIGHUP (default: crl.pem "
      "in the --identity directory, if present)")(
      "cert-expiry-warning", po::value(&cert_expiry_warning)->value_name("DUR"),
      "certificates expiring within this are logged and flagged in `hosts` (default 30d)")(
      "approval-expiry", po::value(&approval_expiry)->value_name("DUR"),
      "an automatic action waiting for approval that nobody decides within this expires as "
      "rejected (default 1h)")(
      "enroll-listen", po::value(&enroll_listen)->value_name("ADDR:PORT"),
      "serve enrollment (`bulkhead-agent enroll --token`) on this address: TLS without client "
      "certificates, the Enrollment service only; off when unset")(
      "ca-key", po::value(&ca_key)->value_name("FILE"),
      "the fleet CA's private key (pki/ca/ca.key), which signs enrolled agents' certificates "
      "and renews agents' certificates over their streams (required with --enroll-listen; "
      "not readable by others)")(
      "enroll-validity", po::value(&enroll_validity)->value_name("DUR"),
      "how long an enrolled agent's certificate lasts (default 365d, at most a year)")(
      "webhook-listen", po::value(&webhook_listen)->value_name("ADDR:PORT"),
      "serve HTTPS webhooks (POST /v1/signals/NAME) on this address; off when unset")(
      "webhook-cert", po::value(&webhook_cert)->value_name("FILE"),
      "the webhook listener's own TLS certificate chain (PEM)")(
      "webhook-key", po::value(&webhook_key)->value_name("FILE"),
      "the webhook listener's private key (PEM)")(
      "webhook-body-limit", po::value(&webhook_body_limit)->value_name("SIZE"),
      "largest webhook body accepted; larger ones are answered 413 (default 1MiB)")(
      "webhook-rate", po::value(&webhook_rate)->value_name("N"),
      "webhook requests a minute per integration; more are answered 429 (default 120)")(
      "crowdsec-lapi", po::value(&crowdsec_lapi)->value_name("URL"),
      "poll this CrowdSec local API's decision stream (http(s)://HOST:PORT) as a bouncer and "
      "hand its decisions to the playbooks (default: off); one controller per API key")(
      "crowdsec-key-file", po::value(&crowdsec_key_file)->value_name("FILE"),
      "the bouncer API key (cscli bouncers add), not readable by others (required with "
      "--crowdsec-lapi)")("crowdsec-ca", po::value(&crowdsec_ca)->value_name("FILE"),
                          "CA certificate(s) to verify an https:// LAPI (default: the system's)")(
      "crowdsec-interval", po::value(&crowdsec_interval)->value_name("DUR"),
      "poll the CrowdSec LAPI this often (default 1s; backs off to 10s while it fails)")(
      "metrics-listen", po::value(&metrics_listen)->value_name("ADDR:PORT"),
      "serve Prometheus metrics (/metrics) and health (/healthz, /readyz) over plain HTTP on "
      "this address, meant for loopback or a management network; off when unset")(
      "log-format", po::value(&log_format)->value_name("text|json"), "log format (default text)")(
      "log-level", po::value(&log_level)->value_name("LEVEL"),
      "trace, debug, info, warn, error or off (default info)");

  ControllerCommandLine out;
  auto parsed = parseOptions(desc, args, out.usage, out.flags);
  if (!parsed.ok()) return parsed.status();
  const po::variables_map& vm = *parsed;
  if (vm.count("help")) {
    out.help = true;
    return out;
  }
  if (vm.count("version")) {
    out.version = true;
    return out;
  }

  for (const char* required : {"listen", "identity", "data-dir"}) {
    if (!vm.count(required)) {
      return absl::InvalidArgumentError(fmt::format("--{}: required", required));
    }
  }
  ControllerConfig& c = out.config;
  auto hp = parseHostPort("--listen", listen);
  if (!hp.ok()) return hp.status();
  c.listen = *hp;
  c.listen_text = listen;
  for (const auto& a : advertise) {
    auto ep = parseHostPort("--advertise", a);
    if (!ep.ok()) return ep.status();
    if (!isIpLiteral(ep->host) || isWildcard(ep->host)) {
      return absl::InvalidArgumentError(fmt::format(
          "--advertise: invalid value \"{}\": expected an IP literal agents can dial", a));
    }
    c.advertise.push_back(*ep);
  }
  if (identity.empty()) return absl::InvalidArgumentError("--identity: empty directory name");
  if (data_dir.empty()) return absl::InvalidArgumentError("--data-dir: empty directory name");
  c.identity_dir = identity;
  c.data_dir = data_dir;
  if (vm.count("store") != 0) {
    if (!store.starts_with("postgresql://") && !store.starts_with("postgres://")) {
      return absl::InvalidArgumentError(
          "--store: want postgresql://USER@HOST/DB?... (a PostgreSQL connection URI); without "
          "--store the state is a SQLite database in --data-dir");
    }
    c.store = store;
  }
  if (vm.count("replica") != 0) {
    if (store.empty()) {
      return absl::InvalidArgumentError(
          "--replica: needs --store (controllers serving at once share a PostgreSQL database)");
    }
    const bool valid = !replica.empty() && replica.size() <= 64 &&
                       replica.find_first_not_of(
                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                           "0123456789-_") == std::string::npos;
    if (!valid) {
      return absl::InvalidArgumentError(
          fmt::format("--replica: \"{}\": want 1 to 64 letters, digits, '-' or '_'", replica));
    }
    c.replica = replica;
  }
  if (vm.count("evidence-dir") != 0 && evidence_dir.empty()) {
    return absl::InvalidArgumentError("--evidence-dir: empty directory name");
  }
  c.evidence_dir =
      evidence_dir.empty() ? (std::filesystem::path(data_dir) / "evidence").string() : evidence_dir;
  if (vm.count("audit-key") != 0 && audit_key.empty()) {
    return absl::InvalidArgumentError("--audit-key: empty file name");
  }
  c.audit_key =
      audit_key.empty() ? (std::filesystem::path(identity) / "audit.key").string() : audit_key;
  if (vm.count("runtime-dir") != 0 && runtime_dir.empty()) {
    return absl::InvalidArgumentError("--runtime-dir: empty directory name");
  }
  c.runtime_dir =
      runtime_dir.empty() ? (std::filesystem::path(data_dir) / "run").string() : runtime_dir;
  c.policy_dir = policy_dir;

  auto interval = parseDuration("--heartbeat-interval", hb_interval);
  if (!interval.ok()) return interval.status();
  auto timeout = parseDuration("--heartbeat-timeout", hb_timeout);
  if (!timeout.ok()) return timeout.status();
  if (*interval > std::chrono::hours(1)) {
    return absl::InvalidArgumentError(
        fmt::format("--heartbeat-interval: invalid value \"{}\": at most 1h", hb_interval));
  }
  if (*timeout <= *interval) {
    return absl::InvalidArgumentError(fmt::format(
        "--heartbeat-timeout: invalid value \"{}\": must be longer than --heartbeat-interval ({})",
        hb_timeout, hb_interval));
  }
  c.heartbeat_interval = *interval;
  c.heartbeat_timeout = *timeout;

  auto limit = parsePositive("--selector-limit", selector_limit);
  if (!limit.ok()) return limit.status();
  c.selector_limit = *limit;

  for (const std::string& arg : grpc_args) {
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    int value = 0;
    const char* first = eq == std::string::npos ? nullptr : arg.data() + eq + 1;
    const char* last = arg.data() + arg.size();
    const bool named =
        name.starts_with("grpc.") && name.size() > 5 &&
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._") == std::string::npos;
    const bool numbered =
        first != nullptr && first != last && std::from_chars(first, last, value).ptr == last;
    if (!named || !numbered) {
      return absl::InvalidArgumentError(
          fmt::format("--grpc-arg: invalid value \"{}\": expected grpc.NAME=INTEGER (e.g. "
                      "grpc.http2.bdp_probe=0)",
                      escapeNonPrintable(arg.substr(0, 128))));
    }
    c.grpc_args.emplace_back(name, value);
  }

  for (auto [flag, text, max, dest] :
       {std::tuple{"--block-confirm-prefix-v4", &block_confirm_v4, 32, &c.block_confirm_prefix_v4},
        std::tuple{"--block-confirm-prefix-v6", &block_confirm_v6, 128,
                   &c.block_confirm_prefix_v6}}) {
    int v = -1;
    if (text->empty() || text->find_first_not_of("0123456789") != std::string::npos ||
        text->size() > 3 || (v = std::stoi(*text)) > max) {
      return absl::InvalidArgumentError(
          fmt::format("{}: invalid value \"{}\": use a prefix length 0 to {}", flag, *text, max));
    }
    *dest = v;
  }

  auto max_evidence = parseByteSize("--max-evidence-bytes", max_evidence_bytes);
  if (!max_evidence.ok()) return max_evidence.status();
  c.max_evidence_bytes = *max_evidence;
  auto quota = parseByteSize("--evidence-host-quota", evidence_host_quota);
  if (!quota.ok()) return quota.status();
  c.evidence_host_quota = *quota;
  auto reserve = parseByteSize("--evidence-reserve", evidence_reserve);
  if (!reserve.ok()) return reserve.status();
  c.evidence_reserve = *reserve;
  auto uploads = parsePositive("--max-evidence-uploads", max_evidence_uploads);
  if (!uploads.ok()) return uploads.status();
  c.max_evidence_uploads = *uploads;
  auto per_host = parsePositive("--max-evidence-uploads-per-host", max_evidence_uploads_per_host);
  if (!per_host.ok()) return per_host.status();
  c.max_evidence_uploads_per_host = *per_host;
  auto idle = parseDuration("--evidence-idle-timeout", evidence_idle_timeout);
  if (!idle.ok()) return idle.status();
  c.evidence_idle_timeout = *idle;
  c.crl_file = crl_file;
  auto expiry_warning = parseDuration("--cert-expiry-warning", cert_expiry_warning);
  if (!expiry_warning.ok()) return expiry_warning.status();
  c.cert_expiry_warning = *expiry_warning;
  auto approvals = parseDuration("--approval-expiry", approval_expiry);
  if (!approvals.ok()) return approvals.status();
  if (approvals->count() <= 0) {
    return absl::InvalidArgumentError(fmt::format(
        "--approval-expiry: invalid value \"{}\": must be longer than 0s", approval_expiry));
  }
  c.approval_expiry = *approvals;

  if (vm.count("metrics-listen")) {
    auto metrics = parseHostPort("--metrics-listen", metrics_listen);
    if (!metrics.ok()) return metrics.status();
    c.metrics_listen = *metrics;
  }

  c.enroll_listen = enroll_listen;
  c.ca_key = ca_key;
  if (!enroll_listen.empty() && ca_key.empty()) {
    return absl::InvalidArgumentError(
        "--enroll-listen: needs --ca-key (the fleet CA's key, which signs enrolled agents)");
  }
  auto validity = parseDuration("--enroll-validity", enroll_validity);
  if (!validity.ok()) return validity.status();
  c.enroll_validity = *validity;

  c.webhook_listen = webhook_listen;
  if (!webhook_listen.empty() && (webhook_cert.empty() || webhook_key.empty())) {
    return absl::InvalidArgumentError(
        "--webhook-listen: needs --webhook-cert and --webhook-key (the listener's own TLS "
        "certificate)");
  }
  c.webhook_cert = webhook_cert;
  c.webhook_key = webhook_key;
  auto body_limit = parseByteSize("--webhook-body-limit", webhook_body_limit);
  if (!body_limit.ok()) return body_limit.status();
  c.webhook_body_limit = *body_limit;
  auto rate = parsePositive("--webhook-rate", webhook_rate);
  if (!rate.ok()) return rate.status();
  c.webhook_rate = *rate;

  c.crowdsec_lapi = crowdsec_lapi;
  c.crowdsec_key_file = crowdsec_key_file;
  c.crowdsec_ca = crowdsec_ca;
  if (crowdsec_lapi.empty()) {
    for (const char* flag : {"crowdsec-key-file", "crowdsec-ca", "crowdsec-interval"}) {
      if (vm.count(flag)) {
        return absl::InvalidArgumentError(fmt::format("--{}: needs --crowdsec-lapi", flag));
      }
    }
  } else if (crowdsec_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--crowdsec-key-file: required with --crowdsec-lapi (the bouncer's API key)");
  }
  auto cs_interval = parseDuration("--crowdsec-interval", crowdsec_interval);
  if (!cs_interval.ok()) return cs_interval.status();
  if (*cs_interval < std::chrono::milliseconds(100) || *cs_interval > std::chrono::hours(1)) {
    return absl::InvalidArgumentError(fmt::format(
        "--crowdsec-interval: invalid value \"{}\": use 100ms to 1h", crowdsec_interval));
  }
  c.crowdsec_interval = *cs_interval;

  if (log_format != "text" && log_format != "json") {
    return absl::InvalidArgumentError(
        fmt::format("--log-format: invalid value \"{}\": use text or json", log_format));
  }
  c.log_format = log_format;
  c.log_level = log_level;  // validated by setupLogging
  return out;
}

ShellCompletion controllerCompletion() {
  const std::vector<std::string> help = {"--help"};
  return {.program = "bulkhead-controller",
          .flags = parseControllerFlags(help)->flags,
          .commands = {{"backup", parseBackupFlags(help)->flags},
                       {"restore", parseRestoreFlags(help)->flags},
                       {"completion", {}}}};
}

std::vector<HostPort> dialableEndpoints(const ControllerConfig& config,
                                        const std::vector<std::string>& certificate_ips) {
  std::vector<HostPort> out;
  auto same = [](const HostPort& a, const HostPort& b) {
    if (a.port != b.port) return false;
    unsigned char x[16] = {}, y[16] = {};
    for (int family : {AF_INET, AF_INET6}) {
      if (inet_pton(family, a.host.c_str(), x) == 1 && inet_pton(family, b.host.c_str(), y) == 1) {
        return std::memcmp(x, y, family == AF_INET ? 4 : 16) == 0;
      }
    }
    return a.host == b.host;
  };
  auto add = [&](const HostPort& hp) {
    for (const auto& e : out) {
      if (same(e, hp)) return;
    }
    out.push_back(hp);
  };
  if (isIpLiteral(config.listen.host) && !isWildcard(config.listen.host)) add(config.listen);
  for (const auto& a : config.advertise) add(a);
  for (const auto& ip : certificate_ips) {
    if (isIpLiteral(ip) && !isWildcard(ip)) add(HostPort{ip, config.listen.port});
  }
  return out;
}

}  // namespace bulkhead::controller
