// The controller's command line, parsed and validated without touching the system (the
// daemon checks files and directories afterwards).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/completion.h"
#include "common/parse.h"

namespace bulkhead::controller {

struct ControllerConfig {
  HostPort listen;                  // --listen ADDR:PORT
  std::string listen_text;          // as given, for logs
  std::vector<HostPort> advertise;  // --advertise IP:PORT (IP literals agents dial)
  std::string identity_dir;         // --identity DIR
  std::string data_dir;             // --data-dir DIR
  // --store postgresql://...: the PostgreSQL database several controllers share; empty: the
  // SQLite database DATA_DIR/controller.db.
  std::string store;
  // --replica NAME (with --store): serve at once with the other controllers of the database,
  // as NAME (unique among them); empty: one serves at a time, the others wait as standbys.
  std::string replica;
  // --evidence-dir DIR: the evidence bundles (default DATA_DIR/evidence). Controllers sharing a
  // --store database share it too (a network file system), so any of them serves a bundle.
  std::string evidence_dir;
  std::string audit_key;            // --audit-key FILE (default IDENTITY_DIR/audit.key)
  std::string runtime_dir;          // --runtime-dir DIR (default DATA_DIR/run): live TLS copy
  std::string policy_dir;           // --policy-dir DIR; empty = no policies
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds heartbeat_timeout{15000};
  // --grpc-arg grpc.NAME=INTEGER (repeatable): gRPC channel arguments of the agent and
  // operator listener, after the controller's own (so they replace them). For tuning and
  // benchmarks (bench/connect_bench.sh); the defaults are what is tested.
  std::vector<std::pair<std::string, int>> grpc_args;
  uint32_t selector_limit = 10;
  // A block wider than these prefix lengths needs `yes`.
  int block_confirm_prefix_v4 = 16;
  int block_confirm_prefix_v6 = 48;
  // --max-evidence-bytes: an evidence upload announcing more is refused before any byte.
  uint64_t max_evidence_bytes = uint64_t{8} << 30;
  // --evidence-host-quota: bytes of evidence stored (plus in progress) per host.
  uint64_t evidence_host_quota = uint64_t{32} << 30;
  // --evidence-reserve: free space the evidence file system keeps after every upload.
  uint64_t evidence_reserve = uint64_t{1} << 30;
  // --max-evidence-uploads, --max-evidence-uploads-per-host: uploads in progress at once.
  uint32_t max_evidence_uploads = 16;
  uint32_t max_evidence_uploads_per_host = 2;
  // --evidence-idle-timeout: an upload that sends nothing for this long is cancelled, freeing
  // its place among the uploads in progress.
  std::chrono::milliseconds evidence_idle_timeout{std::chrono::seconds(60)};
  // --crl FILE: the fleet CA's CRL (`bulkhead pki revoke`), re-read on SIGHUP; empty: the
  // identity directory's crl.pem, when there is one.
  std::string crl_file;
  // --cert-expiry-warning: certificates expiring within this are logged and flagged in `hosts`.
  std::chrono::milliseconds cert_expiry_warning{std::chrono::hours(24 * 30)};
  // --approval-expiry: a pending approval nobody decided within this expires (as rejected).
  std::chrono::milliseconds approval_expiry{std::chrono::hours(1)};
  // Enrollment with join tokens (service/enrollment.h): off while enroll_listen is empty.
  std::string enroll_listen;  // --enroll-listen ADDR:PORT
  std::string ca_key;         // --ca-key FILE: the fleet CA's key (required with --enroll-listen)
  // --enroll-validity: how long enrolled agents' certificates last.
  std::chrono::milliseconds enroll_validity{std::chrono::hours(24 * 365)};
  // The HTTPS webhook listener (controller/webhook/): off while webhook_listen is empty.
  std::string webhook_listen;             // --webhook-listen ADDR:PORT
  std::string webhook_cert;               // --webhook-cert FILE (required with --webhook-listen)
  std::string webhook_key;                // --webhook-key FILE (required with --webhook-listen)
  uint64_t webhook_body_limit = 1 << 20;  // --webhook-body-limit SIZE
  uint32_t webhook_rate = 120;            // --webhook-rate N: requests a minute per integration
  // The CrowdSec bouncer (controller/crowdsec/): off when crowdsec_lapi is empty.
  std::string crowdsec_lapi;      // --crowdsec-lapi URL: http(s)://HOST:PORT of the local API
  std::string crowdsec_key_file;  // --crowdsec-key-file FILE: the bouncer's API key (required
                                  // with --crowdsec-lapi; not readable by others)
  std::string crowdsec_ca;        // --crowdsec-ca FILE: CA of an https:// LAPI
  std::chrono::milliseconds crowdsec_interval{1000};  // --crowdsec-interval DUR
  // The metrics and health listener (controller/metrics/): plain HTTP, off when unset.
  std::optional<HostPort> metrics_listen;  // --metrics-listen ADDR:PORT
  std::string log_format = "text";
  std::string log_level = "info";
};

struct ControllerCommandLine {
  bool help = false;     // --help: print `usage` and exit 0
  bool version = false;  // --version
  std::string usage;
  std::vector<ShellFlag> flags;  // the flags `usage` lists (shell completion)
  ControllerConfig config;  // valid only when !help && !version
};

// Parses the arguments after the program name. Errors are one line naming the flag and the
// value at fault (unknown flags, missing required flags, bad durations or addresses).
absl::StatusOr<ControllerCommandLine> parseControllerFlags(const std::vector<std::string>& args);

// `bulkhead-controller backup --data-dir DIR --to FILE` (controller/store/backup.h).
struct BackupCommandLine {
  bool help = false;
  std::string usage;
  std::vector<ShellFlag> flags;  // the flags `usage` lists (shell completion)
  std::string data_dir;  // the running controller's --data-dir
  std::string to;        // the backup file to create (never replaced)
};

// Parses the arguments after "backup". Errors are one line naming the flag.
absl::StatusOr<BackupCommandLine> parseBackupFlags(const std::vector<std::string>& args);

// `bulkhead-controller restore --from FILE --data-dir DIR [--identity DIR | --audit-key FILE]`.
struct RestoreCommandLine {
  bool help = false;
  std::string usage;
  std::vector<ShellFlag> flags;  // the flags `usage` lists (shell completion)
  std::string from;       // a `backup` file
  std::string data_dir;   // the controller's --data-dir, without a database yet
  std::string audit_key;  // the audit chain's key (default IDENTITY_DIR/audit.key)
};

// Parses the arguments after "restore". --audit-key or --identity is required (the key must
// be the one the backup's chain was written with).
absl::StatusOr<RestoreCommandLine> parseRestoreFlags(const std::vector<std::string>& args);

// The bash completion of bulkhead-controller: its flags, `backup`, `restore`.
ShellCompletion controllerCompletion();

// The IP literals the controller can be dialled at, with their port: the --listen address
// when it is an IP literal other than a wildcard (0.0.0.0, ::), every --advertise, and every
// IP address of the controller's certificate (`certificate_ips`, its subjectAltName: the
// addresses agents verify it by) with the --listen port. Each address once, in that order.
// These are the controller's own addresses: kept reachable on isolated hosts, never blocked.
std::vector<HostPort> dialableEndpoints(const ControllerConfig& config,
                                        const std::vector<std::string>& certificate_ips);

}  // namespace bulkhead::controller
