#include "agent/daemon/report_commands.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "agent/core/sshguard.h"
#include "agent/core/wazuh.h"
#include "agent/linux/signal_socket.h"
#include "common/format.h"

namespace bulkhead::agent {
namespace v1 = bulkhead::v1;
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// The socket answers within the request's timeout; the client waits a little longer so the
// agent's own "not delivered" (with its reason) arrives first.
constexpr std::chrono::milliseconds kAnswerMargin{2000};
// wazuh-execd writes its message and its check_keys answer at once.
constexpr std::chrono::milliseconds kWazuhReadTimeout{10'000};
constexpr size_t kMaxSshguardLineBytes = 1024;

// Sends one signal; a transport failure becomes a not-delivered response.
SignalResponse deliver(const ReportIo& io, const v1::Signal& signal,
                       std::chrono::milliseconds timeout) {
  SignalRequest request{signal, timeout};
  auto answer = io.exchange(encodeSignalRequest(request), timeout + kAnswerMargin);
  SignalResponse r;
  if (!answer.ok()) {
    r.result = SignalResult::kNotDelivered;
    r.error = fmt::format("not delivered: {}", answer.status().message());
    return r;
  }
  auto decoded = decodeSignalResponse(*answer);
  if (!decoded.ok()) {
    r.result = SignalResult::kNotDelivered;
    r.error = fmt::format("not delivered: {}", decoded.status().message());
    return r;
  }
  return *decoded;
}

int exitCodeOf(const SignalResponse& r) {
  switch (r.result) {
    case SignalResult::kRecorded: return kExitOk;
    case SignalResult::kInvalid: return kExitUsage;
    case SignalResult::kRefused:
    case SignalResult::kNotDelivered: return kExitFailure;
  }
  return kExitFailure;
}

std::string describe(const SignalResponse& r) {
  if (r.result == SignalResult::kRecorded) {
    return fmt::format("signal {} recorded: {}", r.signal_id, dispositionName(r.disposition));
  }
  return r.error;
}

int runSignal(const ReportCommand& c, const ReportIo& io) {
  SignalResponse r = deliver(io, c.signal, c.timeout);
  if (c.json) {
    std::string line = encodeSignalResponse(r);
    io.out(line);
  } else if (r.result == SignalResult::kRecorded) {
    io.out(describe(r) + "\n");
  } else {
    io.err(describe(r));
  }
  return exitCodeOf(r);
}

int runWazuh(const ReportCommand& c, const ReportIo& io) {
  auto text = io.read_line(kMaxWazuhMessageBytes, kWazuhReadTimeout);
  if (!text.ok() || !text->has_value()) {
    io.err(fmt::format("wazuh-active-response: no message on stdin: {}",
                       text.ok() ? "end of input" : std::string(text.status().message())));
    return kExitUsage;
  }
  auto message = parseWazuhMessage(**text, c.severity);
  if (!message.ok()) {
    io.err(fmt::format("wazuh-active-response: {}", message.status().message()));
    return kExitUsage;
  }
  if (needsCheckKeys(*message)) {
    io.out(checkKeysMessage(*message));
    auto answer = io.read_line(size_t{64} * 1024, kWazuhReadTimeout);
    if (!answer.ok() || !answer->has_value()) {
      io.err(fmt::format("wazuh-active-response: no answer to check_keys: {}",
                         answer.ok() ? "end of input" : std::string(answer.status().message())));
      return kExitFailure;
    }
    auto control = parseWazuhControl(**answer);
    if (!control.ok()) {
      io.err(fmt::format("wazuh-active-response: {}", control.status().message()));
      return kExitFailure;
    }
    if (*control == WazuhControl::kAbort) {
      io.err("wazuh-active-response: wazuh-execd answered abort (already active): nothing sent");
      return kExitOk;
    }
  }
  v1::Signal signal = message->signal;
  signal.set_payload_sha256(sha256Hex(**text));
  if (auto st = checkLocalSignal(signal); !st.ok()) {
    io.err(fmt::format("wazuh-active-response: {}", st.message()));
    return kExitUsage;
  }
  SignalResponse r = deliver(io, signal, c.timeout);
  io.err(fmt::format("wazuh-active-response: {} rule {}: {}", message->command, signal.rule(),
                     describe(r)));
  return exitCodeOf(r);
}

int runSshguard(const ReportCommand& c, const ReportIo& io) {
  int failures = 0;
  for (;;) {
    auto line = io.read_line(kMaxSshguardLineBytes, std::chrono::milliseconds(-1));
    if (!line.ok()) {
      // A line too long: skipped (the reader dropped it up to its newline); keep going.
      io.err(fmt::format("sshguard-backend: {}", line.status().message()));
      if (absl::IsOutOfRange(line.status())) continue;
      return kExitFailure;
    }
    if (!line->has_value()) break;  // sshguard exited
    auto command = parseSshguardLine(**line);
    if (!command.ok()) {
      io.err(fmt::format("sshguard-backend: ignored: {}", command.status().message()));
      continue;
    }
    if (command->kind == SshguardCommand::Kind::kFlush) {
      io.err("sshguard-backend: flush ignored (blocks are the controller's to lift)");
      continue;
    }
    v1::Signal signal;
    signal.set_source(v1::SIGNAL_SOURCE_SSHGUARD);
    signal.set_rule("sshguard");
    signal.set_severity(c.severity);
    signal.add_addresses(command->cidr);
    signal.set_resolved(command->kind == SshguardCommand::Kind::kRelease);
    SignalResponse r = deliver(io, signal, c.timeout);
    if (r.result != SignalResult::kRecorded) ++failures;
    io.err(fmt::format("sshguard-backend: {} {}: {}", signal.resolved() ? "release" : "block",
                       command->cidr, describe(r)));
  }
  if (failures > 0) io.err(fmt::format("sshguard-backend: {} signals not recorded", failures));
  return kExitOk;
}

// Lines from a file descriptor, bounded in length and (optionally) in waiting time.
class FdLineReader {
 public:
  explicit FdLineReader(int fd) : fd_(fd) {}

  absl::StatusOr<std::optional<std::string>> next(size_t max_bytes,
                                                  std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool discarding = false;
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (discarding || line.size() > max_bytes) {
          return absl::OutOfRangeError(
              fmt::format("a line longer than {} bytes skipped", max_bytes));
        }
        return std::optional<std::string>(std::move(line));
      }
      if (buf_.size() > max_bytes) {  // keep reading to the newline, keep nothing
        buf_.clear();
        discarding = true;
      }
      if (eof_) {
        if (buf_.empty() || discarding) return std::optional<std::string>();
        std::string line = std::move(buf_);
        buf_.clear();
        return std::optional<std::string>(std::move(line));
      }
      int wait_ms = -1;
      if (timeout.count() >= 0) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) {
          return absl::DeadlineExceededError(
              fmt::format("no complete line on stdin within {} ms", timeout.count()));
        }
        wait_ms = static_cast<int>(left);
      }
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, wait_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return absl::InternalError(fmt::format("stdin: {}", std::strerror(errno)));
      if (r == 0) continue;  // the deadline check above reports it
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) return absl::InternalError(fmt::format("stdin: {}", std::strerror(errno)));
      if (n == 0) {
        eof_ = true;
        continue;
      }
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

}  // namespace

int runReportCommand(const ReportCommand& command, const ReportIo& io) {
  switch (command.mode) {
    case ReportMode::kSignal: return runSignal(command, io);
    case ReportMode::kWazuh: return runWazuh(command, io);
    case ReportMode::kSshguard: return runSshguard(command, io);
  }
  return kExitUsage;
}

int reportMain(const std::vector<std::string>& args) {
  // They run under fail2ban, wazuh-execd or sshguard, which stop them with SIGTERM (the
  // default action); a reader gone away is an error, not a signal.
  std::signal(SIGPIPE, SIG_IGN);
  auto command = parseReportCommand(args);
  if (!command.ok()) {
    std::fprintf(stderr, "bulkhead-agent: %s\n", std::string(command.status().message()).c_str());
    return kExitUsage;
  }
  if (command->help) {
    std::fputs(("usage:\n" + reportUsage()).c_str(), stdout);
    return kExitOk;
  }
  return runReportCommand(*command, processReportIo(command->state_dir));
}

ReportIo processReportIo(const std::filesystem::path& state_dir) {
  ReportIo io;
  io.exchange = [path = state_dir / "signal.sock"](const std::string& line,
                                                   std::chrono::milliseconds timeout) {
    return exchangeSignalSocket(path, line, timeout);
  };
  auto reader = std::make_shared<FdLineReader>(STDIN_FILENO);
  io.read_line = [reader](size_t max_bytes, std::chrono::milliseconds timeout) {
    return reader->next(max_bytes, timeout);
  };
  io.out = [](const std::string& s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  };
  io.err = [](const std::string& s) { std::fprintf(stderr, "bulkhead-agent: %s\n", s.c_str()); };
  return io;
}

}  // namespace bulkhead::agent
