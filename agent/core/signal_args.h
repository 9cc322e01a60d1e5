// The command lines of the agent's reporting subcommands, parsed and validated without
// touching the system:
//   bulkhead-agent signal --source S --rule NAME [--ip ADDR]... [--severity LEVEL]
//       [--ttl DURATION] [--resolved] [--key KEY] [--label k=v]... [--timeout 5s] [--json]
//       [--state-dir DIR]
//   bulkhead-agent wazuh-active-response [--severity LEVEL] [--timeout 5s] [--state-dir DIR]
//   bulkhead-agent sshguard-backend [--severity LEVEL] [--timeout 5s] [--state-dir DIR]
// Every error is one line naming the flag and the value at fault.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/core/signal.h"
#include "bulkhead/v1/signals.pb.h"
#include "common/completion.h"

namespace bulkhead::agent {

// Where the packaged unit runs the agent (packaging/systemd/bulkhead-agent.service).
inline constexpr std::string_view kDefaultAgentStateDir = "/var/lib/bulkhead-agent";

enum class ReportMode {
  kSignal,    // `signal`: one signal from the command line
  kWazuh,     // `wazuh-active-response`: one Wazuh message on stdin
  kSshguard,  // `sshguard-backend`: sshguard's backend commands on stdin until EOF
};

struct ReportCommand {
  ReportMode mode = ReportMode::kSignal;
  bool help = false;
  std::filesystem::path state_dir{std::string(kDefaultAgentStateDir)};
  std::chrono::milliseconds timeout = kDefaultSignalTimeout;  // per signal
  bool json = false;                                          // kSignal: print the receipt as JSON
  // kSignal: the signal, checked by checkLocalSignal (addresses canonical).
  bulkhead::v1::Signal signal;
  // kWazuh, kSshguard: severity of every signal; UNSPECIFIED: the tool's default.
  bulkhead::v1::Severity severity = bulkhead::v1::SEVERITY_UNSPECIFIED;
};

// True if `first` (argv[1]) names one of the reporting subcommands.
bool isReportSubcommand(std::string_view first);

// Parses argv[1..], argv[1] being the subcommand. INVALID_ARGUMENT naming the flag.
absl::StatusOr<ReportCommand> parseReportCommand(const std::vector<std::string>& args);

// Usage of the three subcommands (for --help and `bulkhead-agent --help`).
std::string reportUsage();

// The flags parseReportCommand accepts in `mode`.
std::vector<ShellFlag> reportFlags(ReportMode mode);

}  // namespace bulkhead::agent
