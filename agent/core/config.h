// The agent's command line, parsed and validated without touching the system. File-system
// checks (identity files, state dir) are start-up steps of the daemon, not of this parser.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/completion.h"
#include "common/parse.h"
#include "common/protocol_version.h"

namespace bulkhead::agent {

enum class AgentMode {
  kRun,       // the daemon: apply persisted state, connect, reconcile
  kRestore,   // boot: apply the persisted state and exit
  kStatus,    // print the running agent's local status (JSON) and exit
  kHelp,      // --help: print usage and exit 0
  kVersion,   // --version
};

struct AgentConfig {
  AgentMode mode = AgentMode::kRun;
  // kRun: every --controller in the order given (the replicas of one controller, sharing its
  // database; one is active at a time). `controller` is the first of them.
  std::vector<HostPort> controllers;
  HostPort controller;
  std::string controller_name = "bulkhead-controller";  // TLS name checked in the controller cert
  bool controller_name_given = false;  // --controller-name given: overrides the identity's file
  std::filesystem::path identity_dir;                   // kRun
  std::filesystem::path state_dir;                      // every mode but help/version
  Labels labels;
  std::string log_format = "text";                      // text | json
  std::string log_level = "info";
  // Enforcement in the machine's initial network namespace is refused unless this is set
  // (a real host sets it in its unit file; a developer machine or CI never does).
  bool allow_root_netns = false;
  // Processes kill-sessions / kill-process never touch (besides pid 1, the agent itself and
  // the sshd listener).
  std::vector<std::string> protect_exes;
  std::vector<std::string> protect_comms;
  // Evidence captures: bundles are written here and stay until the controller has
  // acknowledged them (default <state-dir>/evidence, created 0700).
  std::filesystem::path capture_spool_dir;
  // A certificate ending within this is renewed over the stream (agent/daemon/cert_renewer.h)
  // by a controller that holds the CA key.
  std::chrono::milliseconds renew_before{std::chrono::hours(24 * 30)};
  // Keep clean library pages mapped while idle (agent/linux/resident_pages.h): by default the
  // daemon gives them back 15 s after start and then every 5 min.
  bool keep_resident_pages = false;
  // Testing only: every capture also runs a collector that never returns (time-limit tests).
  bool test_hang_collector = false;
  // Testing only (--test-protocol): the protocol version this agent announces and
  // checks the controller's against, to prove how peers of other versions are treated.
  ProtocolVersion protocol = kProtocolVersion;
};

// Parses argv[1..]. `bulkhead-agent status --state-dir DIR` and `--status` both select
// kStatus. Errors are one line naming the flag and the value at fault. `--controller` may be
// given several times; the same controller twice (host names compared without case, IP
// literals by address, and the port) is refused.
absl::StatusOr<AgentConfig> parseAgentArgs(const std::vector<std::string>& args);

// Usage text for --help.
std::string agentUsage();

// The bash completion of bulkhead-agent: its flags, `status` and the reporting subcommands.
ShellCompletion agentCompletion();

}  // namespace bulkhead::agent
