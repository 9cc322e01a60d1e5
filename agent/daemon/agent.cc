#include "agent/daemon/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>

#include <spdlog/spdlog.h>

#include "agent/core/backoff.h"
#include "agent/core/config.h"
#include "agent/core/hello.h"
#include "agent/daemon/agent_status.h"
#include "agent/daemon/controller_pin.h"
#include "agent/linux/host_facts.h"
#include "agent/linux/netns_guard.h"
#include "agent/linux/status_socket.h"
#include "agent/rpc/controller_session.h"
#include "agent/rpc/timer_queue.h"
#include "common/format.h"
#include "common/logging.h"
#include "common/tls.h"

namespace bulkhead::agent {
namespace fs = std::filesystem;
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int64_t nowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void printError(const std::string& line) { std::fprintf(stderr, "bulkhead-agent: %s\n", line.c_str()); }

// Signals the daemon stops on. Blocked in every thread (set before any thread starts) and
// received synchronously by the main thread.
sigset_t stopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Waits up to `timeout` for a stop signal; returns the signal number or 0.
int waitForStopSignal(std::chrono::milliseconds timeout) {
  sigset_t set = stopSignals();
  timespec ts{static_cast<time_t>(timeout.count() / 1000),
              static_cast<long>((timeout.count() % 1000) * 1'000'000)};
  for (;;) {
    int sig = ::sigtimedwait(&set, nullptr, &ts);
    if (sig > 0) return sig;
    if (errno == EINTR) continue;
    return 0;
  }
}

// Creates the state dir (0700) if missing and proves it is writable.
absl::Status prepareStateDir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          fmt::format("--state-dir: cannot create {}: {}", dir.string(), ec.message()));
    }
    ::chmod(dir.c_str(), 0700);
  }
  if (!fs::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(fmt::format("--state-dir: {} is not a directory", dir.string()));
  }
  fs::path probe = dir / ".write-probe";
  if (auto s = writeFileAtomic(probe, "probe\n", 0600); !s.ok()) {
    return absl::PermissionDeniedError(
        fmt::format("--state-dir: {} is not writable: {}", dir.string(), s));
  }
  fs::remove(probe, ec);
  return absl::OkStatus();
}

// Holds STATE_DIR/agent.lock for the life of the process: one agent per state dir.
absl::StatusOr<int> lockStateDir(const fs::path& dir) {
  fs::path path = dir / "agent.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        fmt::format("--state-dir: cannot open {}: {}", path.string(), std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return absl::AlreadyExistsError(fmt::format(
        "--state-dir: another bulkhead-agent is running with {} (lock {} held)", dir.string(),
        path.string()));
  }
  return fd;
}

// The daemon's side of the controller stream.
class AgentDaemon final : public SessionHandler {
 public:
  AgentDaemon(const AgentConfig& config, std::string host_id, StatusBoard* board)
      : config_(config), host_id_(std::move(host_id)), board_(board) {}

  v1::AgentMessage hello() override {
    AgentStatus s = board_->snapshot();
    HelloInputs in;
    in.host_id = host_id_;
    in.facts = collectHostFacts();
    in.labels = config_.labels;
    in.agent_version = BULKHEAD_VERSION;
    in.enforced_generation = s.enforced_generation;
    in.ruleset_hash = s.ruleset_hash;
    in.now_unix_ms = nowUnixMs();
    v1::AgentMessage m;
    *m.mutable_hello() = buildHello(in);
    return m;
  }

  v1::AgentMessage heartbeat() override {
    AgentStatus s = board_->snapshot();
    v1::AgentMessage m;
    auto* hb = m.mutable_heartbeat();
    hb->set_sent_at_unix_ms(nowUnixMs());
    hb->set_enforced_generation(s.enforced_generation);
    hb->set_ruleset_hash(s.ruleset_hash);
    return m;
  }

  void onConnected(const v1::Welcome& w) override {
    int64_t now = nowUnixMs();
    board_->update([&](AgentStatus& s) {
      s.connected = true;
      s.connected_since_unix_ms = now;
      s.last_connect_error.clear();
      ++s.connect_count;
    });
    if (!w.host_id().empty() && w.host_id() != host_id_) {
      spdlog::warn("controller knows this agent as \"{}\", certificate says \"{}\"", w.host_id(),
                   host_id_);
    }
    spdlog::info("connected to controller {} as {} (heartbeat every {} ms)", config_.controller.host,
                 host_id_, w.heartbeat_interval_ms());
    last_warned_reason_.clear();
  }

  void onMessage(const v1::ControllerMessage& m) override {
    if (m.has_desired_state()) {
      spdlog::info("desired state generation {} received", m.desired_state().generation());
      board_->update([&](AgentStatus& s) {
        s.desired_generation = std::max(s.desired_generation, m.desired_state().generation());
      });
      // Reconciliation lands with issue 3 (agent/daemon/reconciler).
    } else if (m.has_command()) {
      spdlog::warn("command {} not supported by this agent version", m.command().id());
    }
  }

  void onDisconnected(const std::string& reason, bool was_connected,
                      std::chrono::milliseconds retry_in) override {
    board_->update([&](AgentStatus& s) {
      s.connected = false;
      s.last_connect_error = reason;
      s.last_disconnect_unix_ms = nowUnixMs();
    });
    auto now = std::chrono::steady_clock::now();
    if (was_connected) {
      spdlog::warn("disconnected from controller: {}; reconnecting in {} ms", reason,
                   retry_in.count());
    } else if (reason != last_warned_reason_ || now - last_warned_at_ > std::chrono::minutes(1)) {
      spdlog::warn("cannot reach controller {}:{}: {}; retrying in {} ms", config_.controller.host,
                   config_.controller.port, reason, retry_in.count());
    } else {
      spdlog::debug("controller still unreachable: {}; retrying in {} ms", reason,
                    retry_in.count());
      return;
    }
    last_warned_reason_ = reason;
    last_warned_at_ = now;
  }

 private:
  const AgentConfig& config_;
  std::string host_id_;
  StatusBoard* board_;
  // Touched only from onConnected/onDisconnected, which the session serialises.
  std::string last_warned_reason_;
  std::chrono::steady_clock::time_point last_warned_at_{};
};

int runStatus(const AgentConfig& config) {
  auto doc = queryStatusSocket(config.state_dir / "agent.sock", std::chrono::seconds(3));
  if (!doc.ok()) {
    printError(fmt::format("{}", doc.status()));
    return kExitFailure;
  }
  std::fwrite(doc->data(), 1, doc->size(), stdout);
  return kExitOk;
}

int runDaemon(const AgentConfig& config) {
  if (auto s = setupLogging("bulkhead-agent", config.log_format, config.log_level); !s.ok()) {
    printError(fmt::format("{}", s));
    return kExitUsage;
  }
  auto identity = loadIdentity(config.identity_dir);
  if (!identity.ok()) {
    std::string msg(identity.status().message());
    if (msg.rfind("identity: ", 0) == 0) msg.erase(0, 10);
    printError(fmt::format("--identity: {}", msg));
    return kExitUsage;
  }
  if (identity->self.kind != PeerKind::kAgent) {
    printError(fmt::format("--identity: {} holds a {} certificate; the agent needs one issued "
                           "with `bulkhead pki issue agent`",
                           (config.identity_dir / "tls.crt").string(),
                           peerKindName(identity->self.kind)));
    return kExitUsage;
  }
  if (auto s = prepareStateDir(config.state_dir); !s.ok()) {
    printError(fmt::format("{}", s));
    return kExitUsage;
  }
  auto lock_fd = lockStateDir(config.state_dir);
  if (!lock_fd.ok()) {
    printError(fmt::format("{}", lock_fd.status()));
    return kExitUsage;
  }
  const std::string host_id = identity->self.name;
  StatusBoard board;
  NetnsReport netns = classifyNetns(probeNetns());
  absl::Status enforce_ok = checkEnforcementAllowed(netns, config.allow_root_netns);
  board.update([&](AgentStatus& s) {
    s.host_id = host_id;
    s.controller = fmt::format("{}:{}", config.controller.host, config.controller.port);
    s.netns_verdict = netns.verdict == NetnsVerdict::kInitial      ? "initial"
                      : netns.verdict == NetnsVerdict::kNotInitial ? "not-initial"
                                                                   : "unknown";
    s.enforcement_allowed = enforce_ok.ok();
    s.enforcement_refusal = enforce_ok.ok() ? "" : std::string(enforce_ok.message());
  });
  if (!enforce_ok.ok()) spdlog::warn("{}", enforce_ok);

  auto status_server = StatusSocketServer::create(config.state_dir / "agent.sock", [&board] {
    return statusToJson(board.snapshot(), nowUnixMs());
  });
  if (!status_server.ok()) {
    printError(fmt::format("--state-dir: {}", status_server.status()));
    return kExitUsage;
  }
  spdlog::info("bulkhead-agent {} starting as host {} (state dir {})", BULKHEAD_VERSION, host_id,
               config.state_dir.string());

  // Pin the controller's IPs; an unresolvable name without a previous pin is retried.
  std::random_device rd;
  Backoff pin_backoff(BackoffPolicy{}, (static_cast<uint64_t>(rd()) << 32) | rd());
  PinnedController pin;
  for (;;) {
    auto p = pinController(config.controller, config.state_dir, resolveWithGetaddrinfo, nowUnixMs());
    if (p.ok()) {
      pin = *std::move(p);
      break;
    }
    auto delay = pin_backoff.next();
    board.update([&](AgentStatus& s) { s.last_connect_error = std::string(p.status().message()); });
    spdlog::warn("{}; retrying in {} ms", p.status(), delay.count());
    if (int sig = waitForStopSignal(delay); sig != 0) {
      spdlog::info("signal {} received, exiting", sig);
      return kExitOk;
    }
  }
  board.update([&](AgentStatus& s) { s.controller_ips = pin.ips; });
  spdlog::info("controller {} pinned to {}", config.controller.host, fmt::join(pin.ips, ", "));

  TimerQueue timers;
  AgentDaemon daemon(config, host_id, &board);
  SessionOptions opts;
  opts.targets = grpcTargets(pin);
  opts.credentials = clientCredentials(*identity);
  opts.ssl_target_name = config.controller_name;
  opts.seed = (static_cast<uint64_t>(rd()) << 32) | rd();
  {
    ControllerSession session(opts, &timers, &daemon);
    session.start();
    int sig = 0;
    while ((sig = waitForStopSignal(std::chrono::seconds(3600))) == 0) {
    }
    spdlog::info("signal {} received, disconnecting", sig);
    session.stop();
  }
  ::close(*lock_fd);
  spdlog::info("bulkhead-agent stopped");
  return kExitOk;
}

}  // namespace

int agentMain(const std::vector<std::string>& args) {
  // Before any thread exists: stop signals are received synchronously, SIGPIPE is ignored.
  sigset_t set = stopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto config = parseAgentArgs(args);
  if (!config.ok()) {
    printError(fmt::format("{}", config.status()));
    return kExitUsage;
  }
  switch (config->mode) {
    case AgentMode::kHelp:
      std::cout << agentUsage();
      return kExitOk;
    case AgentMode::kVersion:
      std::cout << "bulkhead-agent " << BULKHEAD_VERSION << "\n";
      return kExitOk;
    case AgentMode::kStatus:
      return runStatus(*config);
    case AgentMode::kRestore:
      printError("--restore: not implemented yet");
      return kExitFailure;
    case AgentMode::kRun:
      return runDaemon(*config);
  }
  return kExitUsage;
}

}  // namespace bulkhead::agent
