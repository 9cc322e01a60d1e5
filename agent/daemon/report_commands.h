// The reporting subcommands: `bulkhead-agent signal`, `wazuh-active-response` and
// `sshguard-backend`. Each turns its input into signals and hands them, one request line at a
// time, to the running agent's signal socket (agent/core/signal.h has the protocol). The
// parsing is pure (agent/core/signal_args, wazuh, sshguard); this file is the I/O around it,
// through ReportIo so tests can drive it.
//
// Exit status: 0 the controller recorded the signal (every signal, for sshguard-backend: EOF
// reached), 1 not delivered or refused by the controller, 2 bad input (nothing sent).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/core/signal_args.h"

namespace bulkhead::agent {

struct ReportIo {
  // Sends one request line to the agent, returns its answer line (signal socket client).
  std::function<absl::StatusOr<std::string>(const std::string& line,
                                            std::chrono::milliseconds timeout)>
      exchange;
  // Reads one line from stdin (without its newline), at most `max_bytes`; nullopt at EOF.
  // A negative timeout waits forever. DEADLINE_EXCEEDED / OUT_OF_RANGE on a slow or long line.
  std::function<absl::StatusOr<std::optional<std::string>>(size_t max_bytes,
                                                           std::chrono::milliseconds timeout)>
      read_line;
  std::function<void(const std::string&)> out;  // stdout, flushed (Wazuh reads check_keys)
  std::function<void(const std::string&)> err;  // one diagnostic line, newline added
};

// The whole reporting subcommand `args` (argv[1..], argv[1] one of isReportSubcommand's):
// parses, prints help or runs it against the process's own I/O; returns the exit status.
// `bulkhead-agent signal ...` and the lean `bulkhead-report signal ...` both end here.
int reportMain(const std::vector<std::string>& args);

// Runs `command` (mode kSignal, kWazuh or kSshguard; not help).
int runReportCommand(const ReportCommand& command, const ReportIo& io);

// The ReportIo of the real process: the signal socket at `state_dir`/signal.sock, fd 0, 1, 2.
ReportIo processReportIo(const std::filesystem::path& state_dir);

}  // namespace bulkhead::agent
