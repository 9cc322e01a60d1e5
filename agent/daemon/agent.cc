#include "agent/daemon/agent.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <random>

#include "agent/capture/capture.h"
#include "agent/collect/collectors.h"
#include "agent/core/backoff.h"
#include "agent/core/config.h"
#include "agent/core/hello.h"
#include "agent/daemon/agent_status.h"
#include "agent/daemon/capture_worker.h"
#include "agent/daemon/cert_renewer.h"
#include "agent/daemon/controller_pin.h"
#include "agent/daemon/enroll_command.h"
#include "agent/daemon/kill_connections.h"
#include "agent/daemon/process_actions.h"
#include "agent/daemon/reconcile_worker.h"
#include "agent/daemon/reconciler.h"
#include "agent/daemon/report_commands.h"
#include "agent/daemon/steps.h"
#include "agent/linux/host_facts.h"
#include "agent/linux/netns_guard.h"
#include "agent/linux/nftables_firewall.h"
#include "agent/linux/process_killer.h"
#include "agent/linux/resident_pages.h"
#include "agent/linux/signal_socket.h"
#include "agent/linux/sock_diag_flow_killer.h"
#include "agent/linux/status_socket.h"
#include "agent/linux/tamper_watch.h"
#include "agent/rpc/controller_session.h"
#include "agent/rpc/evidence_uploader.h"
#include "agent/rpc/signal_forwarder.h"
#include "agent/rpc/timer_queue.h"
#include "common/format.h"
#include "common/logging.h"
#include "common/tls/tls.h"
#include "common/version.h"
#include "evidence/signing.h"

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

// Stand-ins when the kernel may not (or cannot) be touched: every call reports why.
class RefusedFirewall final : public Firewall {
 public:
  explicit RefusedFirewall(absl::Status why) : why_(std::move(why)) {}
  absl::Status check(const std::string&) override { return why_; }
  absl::Status apply(const std::string&) override { return why_; }
  absl::StatusOr<std::string> readBack() override { return why_; }
  absl::Status remove() override { return why_; }

 private:
  absl::Status why_;
};

class RefusedFlowKiller final : public FlowKiller {
 public:
  explicit RefusedFlowKiller(absl::Status why) : why_(std::move(why)) {}
  absl::StatusOr<CutReport> cut(const FlowSelector&, bool) override { return why_; }

 private:
  absl::Status why_;
};

struct Enforcement {
  std::unique_ptr<Firewall> firewall;
  std::unique_ptr<FlowKiller> killer;
};

// The real kernel side if allowed and available; refusing stand-ins otherwise.
Enforcement makeEnforcement(const absl::Status& allowed) {
  Enforcement e;
  if (!allowed.ok()) {
    e.firewall = std::make_unique<RefusedFirewall>(allowed);
    e.killer = std::make_unique<RefusedFlowKiller>(allowed);
    return e;
  }
  auto fw = NftablesFirewall::create();
  if (fw.ok()) {
    e.firewall = *std::move(fw);
  } else {
    spdlog::error("nftables unavailable: {}", fw.status());
    e.firewall = std::make_unique<RefusedFirewall>(absl::UnavailableError(
        fmt::format("nftables unavailable, host left as it was: {}", fw.status())));
  }
  auto killer = SockDiagFlowKiller::create();
  if (killer.ok()) {
    e.killer = *std::move(killer);
  } else {
    spdlog::error("flow killer unavailable: {}", killer.status());
    e.killer = std::make_unique<RefusedFlowKiller>(absl::UnavailableError(
        fmt::format("cannot enumerate flows: {}", killer.status())));
  }
  return e;
}

// "host:port", "[v6]:port".
std::string controllerText(const std::string& host, uint16_t port) {
  return host.find(':') == std::string::npos ? fmt::format("{}:{}", host, port)
                                             : fmt::format("[{}]:{}", host, port);
}

std::string controllersText(const std::vector<HostPort>& controllers) {
  std::vector<std::string> out;
  out.reserve(controllers.size());
  for (const auto& c : controllers) out.push_back(controllerText(c.host, c.port));
  return fmt::format("{}", fmt::join(out, ","));
}

// Every pin in the state dir (--restore, and the restore step before pinning); unreadable pin
// files are logged and left out.
std::vector<PinnedController> readPinsLogged(const fs::path& state_dir) {
  std::vector<absl::Status> errors;
  auto pins = readPins(state_dir, &errors);
  for (const auto& e : errors) spdlog::warn("controller pin left out: {}", e);
  return pins;
}

std::string describeWatchEvent(const TamperEvent& e) {
  std::string s = toString(e.reason);
  if (!e.kinds.empty()) s += fmt::format(": {}", fmt::join(e.kinds, ", "));
  if (!e.actors.empty()) s += fmt::format(" by {}", fmt::join(e.actors, ", "));
  return s;
}

void noteEnforced(StatusBoard* board, const EnforcedState& st) {
  board->update([&](AgentStatus& s) {
    s.desired_generation = st.desired_generation;
    s.enforced_generation = st.enforced_generation;
    s.ruleset_hash = st.ruleset_hash;
    s.isolated = st.isolated;
    s.exemption_sets = st.exemption_sets;
    s.isolation_expires_at_unix_ms = st.isolation_expires_at_unix_ms;
    s.blocks = st.blocks;
    s.fail_closed = st.fail_closed;
  });
}

void logReport(const v1::StateReport& r) {
  if (r.ok()) {
    spdlog::info("generation {} enforced: ruleset {}, {} flows cut", r.enforced_generation(),
                 r.ruleset_hash().empty() ? "removed" : r.ruleset_hash().substr(0, 12), r.flows_cut());
  } else {
    spdlog::error("generation {} not enforced: {} (host left {}; generation {} in force)",
                  r.generation(), r.error(), r.left_closed() ? "closed" : "open",
                  r.enforced_generation());
  }
  for (const auto& st : r.steps()) {
    spdlog::debug("  step {}: {} in {} us{}", st.name(), st.ok() ? "ok" : "FAILED", st.duration_us(),
                  st.detail().empty() ? "" : fmt::format(" ({})", st.detail()));
  }
}

// The daemon's side of the controller stream and of the reconcile worker.
class AgentDaemon final : public SessionHandler, public ReconcileSink {
 public:
  AgentDaemon(const AgentConfig& config, std::string host_id, StatusBoard* board)
      : config_(config),
        host_id_(std::move(host_id)),
        board_(board),
        renewer_(
            CertRenewer::Options{.identity_dir = config.identity_dir,
                                 .host_id = host_id_,
                                 .renew_before = std::chrono::duration_cast<std::chrono::seconds>(
                                     config.renew_before)},
            CertRenewer::Deps{.send = [this](const v1::AgentMessage& m) { return trySend(m); },
                              .reconnect =
                                  [this](const std::string& reason) {
                                    if (ControllerSession* s = session_.load()) {
                                      s->reconnect(reason);
                                    }
                                  },
                              .now_unix = [] { return nowUnixMs() / 1000; }}) {}

  void setWorker(ReconcileWorker* worker) { worker_ = worker; }
  // Session and process commands; null (refused) where enforcement is not allowed.
  void setProcessActions(ProcessActionWorker* actions, std::string refusal) {
    actions_ = actions;
    actions_refusal_ = std::move(refusal);
  }
  void setSession(ControllerSession* session) { session_.store(session); }
  // kill-connections: cuts with owner pids; null where enforcement is not allowed.
  void setConnectionKiller(FlowKiller* killer) { connection_killer_ = killer; }
  // Evidence captures: read-only, so allowed where enforcement is not. Null until the
  // controller is pinned (no command can arrive before) and after the session stopped.
  void setCaptureWorker(CaptureWorker* worker) { capture_worker_.store(worker); }
  // Local tools' signals: told about the stream's ups and downs and given its receipts. Null
  // before the signal socket exists and after it is gone.
  void setSignalForwarder(SignalForwarder* forwarder) { signals_.store(forwarder); }

  // On the Connect stream if it is up; false otherwise (nothing queued).
  bool trySend(const v1::AgentMessage& m) {
    ControllerSession* s = session_.load();
    return s != nullptr && s->send(m);
  }

  // Best effort on the Connect stream (progress, results); dropped when not connected.
  void sendMessage(const v1::AgentMessage& m) { send(m); }

  // SessionHandler.
  v1::AgentMessage hello() override {
    AgentStatus s = board_->snapshot();
    HelloInputs in;
    in.host_id = host_id_;
    in.facts = collectHostFacts();
    in.labels = config_.labels;
    in.agent_version = projectVersion();
    in.protocol = config_.protocol;
    in.enforced_generation = s.enforced_generation;
    in.ruleset_hash = s.ruleset_hash;
    in.now_unix_ms = nowUnixMs();
    v1::AgentMessage m;
    *m.mutable_hello() = buildHello(in);
    return m;
  }

  v1::AgentMessage heartbeat() override {
    renewer_.onHeartbeat();
    AgentStatus s = board_->snapshot();
    v1::AgentMessage m;
    auto* hb = m.mutable_heartbeat();
    hb->set_sent_at_unix_ms(nowUnixMs());
    hb->set_enforced_generation(s.enforced_generation);
    hb->set_ruleset_hash(s.ruleset_hash);
    return m;
  }

  // Which --controller each session target belongs to (the logs name the replica). Set before
  // the session starts.
  void setTargetControllers(std::map<std::string, std::string> by_target) {
    target_controllers_ = std::move(by_target);
  }

  void onConnectedTo(const v1::Welcome& w, const std::string& target) override {
    int64_t now = nowUnixMs();
    board_->update([&](AgentStatus& s) {
      s.connected = true;
      s.connected_since_unix_ms = now;
      s.controller_target = target;
      s.last_connect_error.clear();
      ++s.connect_count;
    });
    if (!w.host_id().empty() && w.host_id() != host_id_) {
      spdlog::warn("controller knows this agent as \"{}\", certificate says \"{}\"", w.host_id(),
                   host_id_);
    }
    spdlog::info("connected to controller {} as {} (heartbeat every {} ms)", replica(target),
                 host_id_, w.heartbeat_interval_ms());
    warned_.clear();  // the next failure is warned again
    if (CaptureWorker* cw = capture_worker_.load()) cw->retryPending();
    if (SignalForwarder* f = signals_.load()) f->onConnected();
    renewer_.onConnected();
  }

  void onMessage(const v1::ControllerMessage& m) override {
    if (m.has_renewal()) {
      renewer_.onRenewal(m.renewal());
    } else if (m.has_signal_receipt()) {
      if (SignalForwarder* f = signals_.load()) f->onReceipt(m.signal_receipt());
    } else if (m.has_desired_state()) {
      spdlog::debug("desired state generation {} received", m.desired_state().generation());
      worker_->desiredState(m.desired_state());
    } else if (m.has_command()) {
      const auto& c = m.command();
      if (c.has_preview_state()) {
        spdlog::info("dry run {} requested by {}", c.id(), c.requested_by());
        worker_->preview(c.id(), c.preview_state().state());
      } else if (c.has_kill_connections()) {
        spdlog::info("kill-connections {} ({}) requested by {}", c.id(),
                     c.kill_connections().remote_cidr(), c.requested_by());
        if (connection_killer_ != nullptr && worker_ != nullptr) {
          worker_->runAsync([this, c](Reconciler&) {
            onCommandResult(killConnections(*connection_killer_, c));
          });
        } else {
          v1::CommandResult r;
          r.set_command_id(c.id());
          r.set_ok(false);
          r.set_error("kill-connections disabled on this host (enforcement not allowed here)");
          onCommandResult(r);
        }
      } else if (c.has_capture()) {
        if (CaptureWorker* cw = capture_worker_.load()) {
          cw->submit(c);
        } else {
          v1::CommandResult r;
          r.set_command_id(c.id());
          r.set_ok(false);
          r.set_error("capture: the agent is stopping");
          onCommandResult(r);
        }
      } else if (c.has_list_sessions() || c.has_kill_sessions() || c.has_kill_process()) {
        if (actions_ != nullptr) {
          actions_->submit(c);
        } else {
          v1::CommandResult r;
          r.set_command_id(c.id());
          r.set_ok(false);
          r.set_error(fmt::format("process actions disabled on this host: {}", actions_refusal_));
          onCommandResult(r);
        }
      } else {
        spdlog::warn("command {} not supported by this agent version", c.id());
        v1::CommandResult r;
        r.set_command_id(c.id());
        r.set_ok(false);
        r.set_error(fmt::format("command not supported by bulkhead-agent {}", projectVersion()));
        onCommandResult(r);
      }
    }
  }

  void onDisconnectedFrom(const std::string& reason, bool was_connected,
                          std::chrono::milliseconds retry_in, const std::string& target,
                          const std::string& next_target) override {
    if (SignalForwarder* f = signals_.load()) f->onDisconnected(reason);
    board_->update([&](AgentStatus& s) {
      s.connected = false;
      s.controller_target.clear();
      s.last_connect_error = reason;
      s.last_disconnect_unix_ms = nowUnixMs();
    });
    const std::string next =
        next_target == target
            ? fmt::format("retrying in {} ms", retry_in.count())
            : fmt::format("failing over to {} in {} ms", replica(next_target), retry_in.count());
    auto now = std::chrono::steady_clock::now();
    // Warned once a minute per target and reason: with several replicas the reasons alternate.
    Warned& warned = warned_[target];
    if (was_connected) {
      spdlog::warn("disconnected from controller {}: {}; {}", replica(target), reason, next);
    } else if (reason != warned.reason || now - warned.at > std::chrono::minutes(1)) {
      spdlog::warn("cannot reach controller {}: {}; {}", replica(target), reason, next);
    } else {
      spdlog::debug("controller {} still unreachable: {}; {}", replica(target), reason, next);
      return;
    }
    warned.reason = reason;
    warned.at = now;
  }

  // ReconcileSink (worker thread).
  void onReport(const v1::StateReport& r, const EnforcedState& st) override {
    noteEnforced(board_, st);
    board_->update([&](AgentStatus& s) {
      s.last_apply_ok = r.ok();
      s.last_apply_error = r.error();
      s.last_apply_unix_ms = r.applied_at_unix_ms();
      s.flows_cut_last = r.flows_cut();
    });
    logReport(r);
    v1::AgentMessage m;
    *m.mutable_state_report() = r;
    send(m);
  }

  void onTamper(const v1::TamperEvent& e, const EnforcedState& st) override {
    noteEnforced(board_, st);
    board_->addTamperEvent(e);
    spdlog::warn("tamper: {}; {} in {} us", e.what(), e.restored() ? "restored" : "NOT restored",
                 e.restore_latency_us());
    v1::AgentMessage m;
    *m.mutable_tamper() = e;
    send(m);
  }

  void onCommandResult(const v1::CommandResult& r) override {
    if (!r.ok()) spdlog::warn("command {} failed: {}", r.command_id(), r.error());
    v1::AgentMessage m;
    *m.mutable_command_result() = r;
    send(m);
  }

 private:
  void send(const v1::AgentMessage& m) {
    ControllerSession* s = session_.load();
    if (s == nullptr || !s->send(m)) {
      spdlog::debug("not connected: {} not sent (the next hello/heartbeat carries the state)",
                    m.GetDescriptor()->oneof_decl(0)->name());
    }
  }

  struct Warned {
    std::string reason;
    std::chrono::steady_clock::time_point at{};
  };

  // "ctl-a.example:7443 (ipv4:10.77.0.2:7443)": the --controller and the target.
  std::string replica(const std::string& target) const {
    auto it = target_controllers_.find(target);
    if (it == target_controllers_.end()) return target;
    return fmt::format("{} ({})", it->second, target);
  }

  const AgentConfig& config_;
  std::string host_id_;
  StatusBoard* board_;
  ReconcileWorker* worker_ = nullptr;
  ProcessActionWorker* actions_ = nullptr;
  FlowKiller* connection_killer_ = nullptr;
  std::string actions_refusal_;
  std::atomic<ControllerSession*> session_{nullptr};
  std::atomic<CaptureWorker*> capture_worker_{nullptr};
  std::atomic<SignalForwarder*> signals_{nullptr};
  CertRenewer renewer_;  // after session_, which its reconnect uses
  std::map<std::string, std::string> target_controllers_;  // written before the session starts
  // Touched only from onConnectedTo/onDisconnectedFrom, which the session serialises.
  std::map<std::string, Warned> warned_;  // by target
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

// --restore (boot, before the network): enforce the persisted state once and exit.
int runRestore(const AgentConfig& config) {
  if (auto s = setupLogging("bulkhead-agent", config.log_format, config.log_level); !s.ok()) {
    printError(fmt::format("{}", s));
    return kExitUsage;
  }
  std::error_code ec;
  if (!fs::is_directory(config.state_dir, ec)) {
    printError(fmt::format("--state-dir: {} is not a directory", config.state_dir.string()));
    return kExitUsage;
  }
  NetnsReport netns = classifyNetns(probeNetns());
  absl::Status allowed = checkEnforcementAllowed(netns, config.allow_root_netns);
  if (!allowed.ok()) {
    printError(fmt::format("--restore: {}", allowed));
    return kExitFailure;
  }
  // Every pinned controller stays reachable (a fail-closed isolation keeps them all).
  std::vector<v1::Endpoint> controller = controllerEndpoints(readPinsLogged(config.state_dir));
  Enforcement enforcement = makeEnforcement(allowed);
  Reconciler reconciler(ReconcilerOptions{config.state_dir, controller, allowed},
                        enforcement.firewall.get(), enforcement.killer.get(), nowUnixMs);
  auto report = reconciler.restore();
  if (!report) {
    std::printf("bulkhead-agent: no persisted state in %s: nothing to restore\n",
                config.state_dir.c_str());
    return kExitOk;
  }
  logReport(*report);
  const auto& st = reconciler.state();
  if (!report->ok()) {
    printError(fmt::format("--restore: {} (host left {})", report->error(),
                           report->left_closed() ? "closed" : "open"));
    return kExitFailure;
  }
  std::printf("bulkhead-agent: restored generation %llu: isolation %s, %zu blocks, ruleset %s\n",
              static_cast<unsigned long long>(st.enforced_generation), st.isolated ? "on" : "off",
              st.blocks, st.ruleset_hash.empty() ? "removed" : st.ruleset_hash.c_str());
  return kExitOk;
}

// What the start-up steps of the daemon build, in the order they build it. Each step's
// teardown resets what it made, so the objects go in reverse order.
struct DaemonState {
  explicit DaemonState(const AgentConfig& c) : config(c) {}
  const AgentConfig& config;
  std::optional<IdentityFiles> identity;
  int lock_fd = -1;
  std::string host_id;
  StatusBoard board;
  absl::Status enforce_ok;
  std::unique_ptr<StatusSocketServer> status_server;
  Enforcement enforcement;
  std::unique_ptr<Reconciler> reconciler;
  std::unique_ptr<AgentDaemon> daemon;
  std::unique_ptr<FlowKiller> connection_killer;
  std::unique_ptr<ReconcileWorker> worker;
  LinuxProcFs procfs;
  ProcSessionSource proc_sessions{&procfs};
  ExecLoginctlRunner loginctl;
  std::unique_ptr<LogindSessionSource> logind_sessions;
  std::unique_ptr<FlowKiller> owner_cutter;
  PidfdSignaller signaller;
  std::unique_ptr<ProcessActions> process_actions;
  std::unique_ptr<ProcessActionWorker> action_worker;
  std::unique_ptr<NetlinkTamperWatch> watch;
  std::unique_ptr<TimerQueue> signal_timers;
  std::unique_ptr<SignalForwarder> signal_forwarder;
  std::unique_ptr<SignalSocketServer> signal_server;
  std::random_device rd;
  std::vector<PinnedController> pins;  // the pinned controllers, in --controller order
  SessionOptions session_options;
  std::unique_ptr<EvidenceUploader> uploader;
  std::unique_ptr<CaptureWorker> capture_worker;
  std::unique_ptr<TimerQueue> timers;
  std::unique_ptr<ControllerSession> session;
  bool served = false;   // start-up completed and ran until a stop signal
};

StepOutcome loggingStep(DaemonState& d, Teardown&) {
  if (auto s = setupLogging("bulkhead-agent", d.config.log_format, d.config.log_level); !s.ok()) {
    printError(fmt::format("{}", s));
    return StepOutcome::exit(kExitUsage);
  }
  return StepOutcome::next();
}

StepOutcome identityStep(DaemonState& d, Teardown&) {
  auto identity = loadIdentity(d.config.identity_dir);
  if (!identity.ok()) {
    std::string msg(identity.status().message());
    if (msg.rfind("identity: ", 0) == 0) msg.erase(0, 10);
    printError(fmt::format("--identity: {}", msg));
    return StepOutcome::exit(kExitUsage);
  }
  if (identity->self.kind != PeerKind::kAgent) {
    printError(fmt::format("--identity: {} holds a {} certificate; the agent needs one issued "
                           "with `bulkhead pki issue agent`",
                           (d.config.identity_dir / "tls.crt").string(),
                           peerKindName(identity->self.kind)));
    return StepOutcome::exit(kExitUsage);
  }
  d.identity = *std::move(identity);
  d.host_id = d.identity->self.name;
  return StepOutcome::next();
}

StepOutcome stateDirStep(DaemonState& d, Teardown& teardown) {
  if (auto s = prepareStateDir(d.config.state_dir); !s.ok()) {
    printError(fmt::format("{}", s));
    return StepOutcome::exit(kExitUsage);
  }
  auto lock_fd = lockStateDir(d.config.state_dir);
  if (!lock_fd.ok()) {
    printError(fmt::format("{}", lock_fd.status()));
    return StepOutcome::exit(kExitUsage);
  }
  d.lock_fd = *lock_fd;
  teardown.add("state dir lock", [&d] { ::close(d.lock_fd); });
  return StepOutcome::next();
}

StepOutcome netnsStep(DaemonState& d, Teardown&) {
  NetnsReport netns = classifyNetns(probeNetns());
  d.enforce_ok = checkEnforcementAllowed(netns, d.config.allow_root_netns);
  d.board.update([&](AgentStatus& s) {
    s.host_id = d.host_id;
    s.controller = controllersText(d.config.controllers);
    s.netns_verdict = netns.verdict == NetnsVerdict::kInitial      ? "initial"
                      : netns.verdict == NetnsVerdict::kNotInitial ? "not-initial"
                                                                   : "unknown";
    s.enforcement_allowed = d.enforce_ok.ok();
    s.enforcement_refusal = d.enforce_ok.ok() ? "" : std::string(d.enforce_ok.message());
  });
  if (!d.enforce_ok.ok()) spdlog::warn("{}", d.enforce_ok);
  return StepOutcome::next();
}

StepOutcome statusSocketStep(DaemonState& d, Teardown& teardown) {
  auto server = StatusSocketServer::create(d.config.state_dir / "agent.sock", [&d] {
    return statusToJson(d.board.snapshot(), nowUnixMs());
  });
  if (!server.ok()) {
    printError(fmt::format("--state-dir: {}", server.status()));
    return StepOutcome::exit(kExitUsage);
  }
  d.status_server = *std::move(server);
  teardown.add("status socket", [&d] { d.status_server.reset(); });
  spdlog::info("bulkhead-agent {} starting as host {} (state dir {})", projectVersion(), d.host_id,
               d.config.state_dir.string());
  return StepOutcome::next();
}

// Enforces the persisted state before anything else, with the controller endpoints known so
// far (the IP literals among --controller, and every previous pin), so a restarted agent
// converges before it connects.
StepOutcome restoreStep(DaemonState& d, Teardown& teardown) {
  const AgentConfig& config = d.config;
  std::vector<PinnedController> known;
  for (const auto& c : config.controllers) {
    if (auto literal = resolveWithGetaddrinfo(c.host);
        literal.ok() && literal->size() == 1 && literal->front() == c.host) {
      known.push_back(PinnedController{c.host, c.port, *literal, 0});
    }
  }
  for (auto& pin : readPinsLogged(config.state_dir)) known.push_back(std::move(pin));
  std::vector<v1::Endpoint> known_controller = controllerEndpoints(known);
  d.enforcement = makeEnforcement(d.enforce_ok);
  d.reconciler = std::make_unique<Reconciler>(
      ReconcilerOptions{config.state_dir, known_controller, d.enforce_ok},
      d.enforcement.firewall.get(), d.enforcement.killer.get(), nowUnixMs);
  d.daemon = std::make_unique<AgentDaemon>(config, d.host_id, &d.board);
  teardown.add("reconciler", [&d] {
    d.daemon.reset();
    d.reconciler.reset();
    d.enforcement = Enforcement{};
  });
  if (d.enforce_ok.ok()) {
    SockDiagFlowKiller::Options ko;
    ko.resolve_owners = true;   // kill-connections reports the owning process
    if (auto k = SockDiagFlowKiller::create(ko); k.ok()) {
      d.connection_killer = *std::move(k);
    } else {
      spdlog::warn("kill-connections unavailable: {}", k.status());
    }
  }
  d.worker = std::make_unique<ReconcileWorker>(d.reconciler.get(), d.daemon.get(),
                                               std::chrono::seconds(10));
  teardown.add("reconcile worker", [&d] {
    d.worker.reset();
    d.connection_killer.reset();
  });
  d.daemon->setConnectionKiller(d.connection_killer.get());
  d.daemon->setWorker(d.worker.get());
  d.worker->runSync([&d](Reconciler& r) {
    if (auto report = r.restore()) {
      d.daemon->onReport(*report, r.state());
    } else {
      spdlog::info("no persisted desired state: nothing to enforce yet");
    }
  });
  return StepOutcome::next();
}

// STATE_DIR/signal.sock: local detection tools report through it (agent/core/signal.h). Up
// before the controller is reached: a signal sent meanwhile waits for the stream (up to its
// timeout) instead of finding no agent.
StepOutcome signalSocketStep(DaemonState& d, Teardown& teardown) {
  d.signal_timers = std::make_unique<TimerQueue>();
  d.signal_forwarder = std::make_unique<SignalForwarder>(
      d.signal_timers.get(),
      [daemon = d.daemon.get()](const v1::AgentMessage& m) { return daemon->trySend(m); });
  auto server = SignalSocketServer::create(
      d.config.state_dir / "signal.sock",
      [f = d.signal_forwarder.get()](const std::string& line, SignalSocketServer::Reply reply) {
        f->handleRequestLine(line, nowUnixMs(), std::move(reply));
      });
  if (!server.ok()) {
    d.signal_forwarder.reset();
    d.signal_timers.reset();
    printError(fmt::format("--state-dir: {}", server.status()));
    return StepOutcome::exit(kExitUsage);
  }
  d.signal_server = *std::move(server);
  d.daemon->setSignalForwarder(d.signal_forwarder.get());
  // No new request once the server is gone; waiting ones are answered "not delivered".
  teardown.add("signal socket", [&d] {
    d.signal_server.reset();
    d.daemon->setSignalForwarder(nullptr);
    d.signal_forwarder.reset();
    d.signal_timers.reset();
  });
  return StepOutcome::next();
}

// Session and process actions: only where enforcement is allowed (never in a developer's or
// CI machine's own namespaces). Flows of killed processes are cut by owner pid.
StepOutcome processActionsStep(DaemonState& d, Teardown& teardown) {
  d.logind_sessions = std::make_unique<LogindSessionSource>(&d.loginctl, &d.proc_sessions);
  SessionSource& session_source = logindLikelyPresent()
                                      ? static_cast<SessionSource&>(*d.logind_sessions)
                                      : static_cast<SessionSource&>(d.proc_sessions);
  teardown.add("process actions", [&d] {
    d.action_worker.reset();
    d.process_actions.reset();
    d.owner_cutter.reset();
    d.logind_sessions.reset();
  });
  if (d.enforce_ok.ok()) {
    SockDiagFlowKiller::Options ko;
    ko.conntrack = false;
    ko.resolve_owners = true;
    if (auto k = SockDiagFlowKiller::create(ko); k.ok()) {
      d.owner_cutter = *std::move(k);
    } else {
      spdlog::warn("killed processes' sockets will close as they die, not cut first: {}", k.status());
    }
    ProcessActionsOptions pao;
    pao.protection.self_pid = static_cast<int>(::getpid());
    pao.protection.exes = d.config.protect_exes;
    pao.protection.comms = d.config.protect_comms;
    d.process_actions = std::make_unique<ProcessActions>(&session_source, d.owner_cutter.get(),
                                                         &d.procfs, &d.signaller, pao);
    d.action_worker = std::make_unique<ProcessActionWorker>(
        d.process_actions.get(),
        [daemon = d.daemon.get()](const v1::CommandResult& r) { daemon->onCommandResult(r); },
        nowUnixMs);
  }
  d.daemon->setProcessActions(d.action_worker.get(),
                              d.enforce_ok.ok() ? "" : std::string(d.enforce_ok.message()));
  return StepOutcome::next();
}

StepOutcome tamperWatchStep(DaemonState& d, Teardown& teardown) {
  if (!d.enforce_ok.ok()) return StepOutcome::next();
  NetlinkTamperWatch::Options wo;
  wo.backstop = std::chrono::milliseconds(0);   // the worker re-checks every 10 s itself
  auto w = NetlinkTamperWatch::create(wo, [worker = d.worker.get()](const TamperEvent& e) {
    worker->recheck(describeWatchEvent(e));
  });
  if (!w.ok()) {
    spdlog::warn("tamper watch unavailable ({}); re-checking the table every 10 s only",
                 w.status());
    return StepOutcome::next();
  }
  d.watch = *std::move(w);
  teardown.add("tamper watch", [&d] {
    d.watch->stop();
    d.watch.reset();
  });
  return StepOutcome::next();
}

// Pins the controllers' IPs. A controller whose name does not resolve and that has no previous
// pin is left out (the others are used); while none can be pinned, pinning is retried until a
// stop signal.
StepOutcome pinStep(DaemonState& d, Teardown&) {
  Backoff pin_backoff(BackoffPolicy{}, (static_cast<uint64_t>(d.rd()) << 32) | d.rd());
  for (;;) {
    auto p = pinControllers(d.config.controllers, d.config.state_dir, resolveWithGetaddrinfo,
                            nowUnixMs());
    if (p.ok()) {
      for (const auto& u : p->unpinned) {
        spdlog::warn(
            "controller {} left out until the agent restarts (no address, no previous "
            "pin): {}",
            controllerText(u.controller.host, u.controller.port), u.why);
      }
      d.pins = std::move(p->pins);
      break;
    }
    auto delay = pin_backoff.next();
    d.board.update([&](AgentStatus& s) { s.last_connect_error = std::string(p.status().message()); });
    spdlog::warn("{}; retrying in {} ms", p.status(), delay.count());
    if (int sig = waitForStopSignal(delay); sig != 0) {
      spdlog::info("signal {} received, exiting (enforced state stays in the kernel)", sig);
      return StepOutcome::exit(kExitOk);
    }
  }
  d.board.update([&](AgentStatus& s) {
    s.controller_ips.clear();
    for (const auto& pin : d.pins) {
      for (const auto& ip : pin.ips) {
        if (std::find(s.controller_ips.begin(), s.controller_ips.end(), ip) ==
            s.controller_ips.end()) {
          s.controller_ips.push_back(ip);
        }
      }
    }
  });
  for (const auto& pin : d.pins) {
    spdlog::info("controller {} pinned to {}", controllerText(pin.host, pin.port),
                 fmt::join(pin.ips, ", "));
  }
  // Isolation keeps every pinned replica reachable, whichever one is active.
  d.worker->pinnedController(controllerEndpoints(d.pins));
  return StepOutcome::next();
}

StepOutcome sessionOptionsStep(DaemonState& d, Teardown&) {
  const AgentConfig& config = d.config;
  SessionOptions& opts = d.session_options;
  opts.targets = grpcTargets(d.pins);
  std::map<std::string, std::string> by_target;
  for (const auto& pin : d.pins) {
    for (const auto& t : grpcTargets(pin)) by_target.emplace(t, controllerText(pin.host, pin.port));
  }
  d.daemon->setTargetControllers(std::move(by_target));
  opts.credentials = clientCredentials(*d.identity);
  opts.protocol = config.protocol;
  if (!(config.protocol == kProtocolVersion)) {
    spdlog::warn("--test-protocol: announcing protocol {} (this build speaks {})",
                 protocolText(config.protocol), protocolText(kProtocolVersion));
  }
  opts.ssl_target_name = config.controller_name_given || d.identity->controller_name.empty()
                             ? config.controller_name
                             : d.identity->controller_name;
  // A replaced identity (`bulkhead pki issue agent --replace`, copied into --identity) is used
  // from the next connection attempt on; one for another host id or of another kind is not.
  opts.reload_credentials = [dir = config.identity_dir, host_id = d.host_id,
                             current = d.identity->cert_pem]() mutable
      -> std::shared_ptr<grpc::ChannelCredentials> {
    auto fresh = loadIdentity(dir);
    if (!fresh.ok()) {
      spdlog::warn("identity: keeping the loaded one: {}", fresh.status());
      return nullptr;
    }
    if (fresh->cert_pem == current) return nullptr;
    if (fresh->self.kind != PeerKind::kAgent || fresh->self.name != host_id) {
      spdlog::error("identity: {}/tls.crt now names {} \"{}\", not agent \"{}\"; keeping the "
                    "loaded identity",
                    dir.string(), peerKindName(fresh->self.kind), fresh->self.name, host_id);
      return nullptr;
    }
    current = fresh->cert_pem;
    spdlog::info("identity: using the replaced certificate (serial {}) from now on",
                 fresh->self.serial);
    return clientCredentials(*fresh);
  };
  opts.seed = (static_cast<uint64_t>(d.rd()) << 32) | d.rd();
  return StepOutcome::next();
}

// Evidence: bundles are signed with the agent's TLS key and uploaded on a channel of their
// own. A key that cannot be used makes captures fail with that error; the agent still runs.
StepOutcome evidenceStep(DaemonState& d, Teardown& teardown) {
  auto signer = evidence::Signer::fromPem(d.identity->key_pem, d.identity->cert_pem);
  if (!signer.ok()) spdlog::error("evidence captures will fail: signing key: {}", signer.status());
  d.uploader = std::make_unique<EvidenceUploader>(EvidenceUploaderOptions{d.session_options});
  CaptureWorkerOptions cwo;
  cwo.spool_dir = d.config.capture_spool_dir;
  cwo.host_id = d.host_id;
  cwo.hostname = collectHostFacts().hostname;
  cwo.agent_version = projectVersion();
  cwo.test_hang_collector = d.config.test_hang_collector;
  if (cwo.test_hang_collector) spdlog::warn("--test-hang-collector: every capture runs test-hang");
  CaptureWorker::Deps deps;
  deps.run_capture = runCapture;
  deps.collectors = collect::defaultCollectors;
  deps.upload = [up = d.uploader.get()](const fs::path& bundle, const v1::EvidenceHeader& header,
                                        const EvidenceUploader::Progress& progress) {
    return up->upload(bundle, header, progress);
  };
  deps.send = [daemon = d.daemon.get()](const v1::AgentMessage& m) { daemon->sendMessage(m); };
  deps.now_unix_ms = nowUnixMs;
  d.capture_worker = std::make_unique<CaptureWorker>(cwo, std::move(signer), std::move(deps));
  d.daemon->setCaptureWorker(d.capture_worker.get());
  if (d.process_actions) d.process_actions->setStoppedCapture(d.capture_worker.get());
  // No command arrives any more by then: stop the upload in flight, wait for a capture-first
  // kill still using the worker, then for a running capture.
  teardown.add("evidence", [&d] {
    d.daemon->setCaptureWorker(nullptr);
    d.uploader->cancel();
    if (d.process_actions) d.process_actions->setStoppedCapture(nullptr);
    d.capture_worker.reset();
    d.uploader.reset();
  });
  return StepOutcome::next();
}

StepOutcome sessionStep(DaemonState& d, Teardown& teardown) {
  d.timers = std::make_unique<TimerQueue>();
  d.session = std::make_unique<ControllerSession>(d.session_options, d.timers.get(), d.daemon.get());
  d.daemon->setSession(d.session.get());
  teardown.add("controller session", [&d] {
    d.session->stop();
    d.daemon->setSession(nullptr);
    d.session.reset();
    d.timers.reset();
  });
  d.session->start();
  return StepOutcome::next();
}

// Clean library pages are given back once start-up has settled, then at this interval: what
// the idle agent uses comes back as minor faults (resident_pages.h).
constexpr std::chrono::seconds kFirstResidentTrim{15};
constexpr std::chrono::seconds kResidentTrimEvery{300};

void trimResidentPages() {
  auto trim = dropCleanFilePages();
  if (!trim.ok()) {
    spdlog::debug("clean library pages not given back: {}", trim.status());
    return;
  }
  spdlog::debug(
      "gave back {} KiB of clean pages of {} read-only file mappings ({} KiB written "
      "copies kept)",
      trim->bytes / 1024, trim->mappings, trim->kept_bytes / 1024);
}

StepOutcome serveStep(DaemonState& d, Teardown&) {
  d.served = true;
  int sig = 0;
  const bool trim = !d.config.keep_resident_pages;
  std::chrono::seconds wait = trim ? kFirstResidentTrim : std::chrono::hours(1);
  while ((sig = waitForStopSignal(wait)) == 0) {
    if (!trim) continue;
    trimResidentPages();
    wait = kResidentTrimEvery;
  }
  spdlog::info("signal {} received, disconnecting (enforced state stays in the kernel)", sig);
  return StepOutcome::next();
}

int runDaemon(const AgentConfig& config) {
  DaemonState d(config);
  auto step = [&d](std::string name, StepOutcome (*fn)(DaemonState&, Teardown&)) {
    return Step{std::move(name), [&d, fn](Teardown& t) { return fn(d, t); }};
  };
  int code = runSteps({step("logging", loggingStep),
                       step("identity", identityStep),
                       step("state dir", stateDirStep),
                       step("network namespace", netnsStep),
                       step("status socket", statusSocketStep),
                       step("restore", restoreStep),
                       step("signal socket", signalSocketStep),
                       step("process actions", processActionsStep),
                       step("tamper watch", tamperWatchStep),
                       step("pin controller", pinStep),
                       step("session options", sessionOptionsStep),
                       step("evidence", evidenceStep),
                       step("controller session", sessionStep),
                       step("serve", serveStep)},
                      kExitOk);
  if (d.served) spdlog::info("bulkhead-agent stopped");
  return code;
}

}  // namespace

int agentMain(const std::vector<std::string>& args) {
  // The reporting subcommands: the daemon's signal mask is not theirs.
  if (!args.empty() && isReportSubcommand(args.front())) return reportMain(args);
  if (!args.empty() && args.front() == "enroll") {
    return enrollMain({args.begin() + 1, args.end()}, std::cout, std::cerr);
  }
  if (!args.empty() && args.front() == "completion") {
    return completionCommand({args.begin() + 1, args.end()}, agentCompletion(), std::cout,
                             std::cerr);
  }
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
      std::cout << versionLine("bulkhead-agent") << "\n";
      return kExitOk;
    case AgentMode::kStatus:
      return runStatus(*config);
    case AgentMode::kRestore:
      return runRestore(*config);
    case AgentMode::kRun:
      return runDaemon(*config);
  }
  return kExitUsage;
}

}  // namespace bulkhead::agent
