// bulkhead-loadgen: opens N agent streams from one process, each with its own freshly minted
// agent identity, its own channel and its own TCP connection, and holds them idle. Prints the
// connect time (total, p50/p99 per stream). A benchmark program, not a test.
//
// Each stream answers a desired state at once with a StateReport saying it is enforced (no
// kernel work): with it, an isolate over many streams measures the controller's fan-out and
// acknowledgement path (a real agent adds its own ~6 ms apply, in parallel on its own host).
//
//   bulkhead-loadgen --controller ADDR:PORT --ca-dir DIR -n N [--hold DUR]
//
// DIR holds ca.crt and ca.key (the fleet CA, e.g. PKI_DIR/ca from `bulkhead pki init`).
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "agent/daemon/controller_pin.h"
#include "agent/rpc/controller_session.h"
#include "agent/rpc/timer_queue.h"
#include "common/format.h"
#include "common/parse.h"
#include "common/pki/pki.h"
#include "common/runtime.h"
#include "common/tls/tls.h"
#include "common/version.h"

namespace bulkhead::bench {
namespace {

namespace po = boost::program_options;
using agent::ControllerSession;
using agent::SessionHandler;
using agent::SessionOptions;
using agent::TimerQueue;
using Clock = std::chrono::steady_clock;

int64_t nowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Shared counters of all sessions.
struct Fleet {
  std::mutex mu;
  std::condition_variable cv;
  int connected = 0;        // currently connected
  int ever_connected = 0;   // sessions that connected at least once
  int in_flight = 0;        // started, first Welcome not yet received
  int disconnects = 0;      // streams lost after being connected
  int failures = 0;         // attempts that failed before Welcome
  std::string last_failure;
};

class LoadAgent final : public SessionHandler {
 public:
  LoadAgent(std::string host_id, Fleet* fleet) : host_id_(std::move(host_id)), fleet_(fleet) {}

  v1::AgentMessage hello() override {
    v1::AgentMessage m;
    auto* h = m.mutable_hello();
    h->set_host_id(host_id_);
    h->set_hostname(host_id_);
    (*h->mutable_labels())["loadgen"] = "1";
    h->set_os("bulkhead-loadgen");
    h->set_agent_version(std::string(projectVersion()));
    h->set_sent_at_unix_ms(nowUnixMs());
    return m;
  }
  v1::AgentMessage heartbeat() override {
    v1::AgentMessage m;
    m.mutable_heartbeat()->set_sent_at_unix_ms(nowUnixMs());
    return m;
  }
  void onConnected(const v1::Welcome&) override {
    std::lock_guard<std::mutex> lock(fleet_->mu);
    if (!first_connect_) {
      first_connect_ = Clock::now() - started_;
      ++fleet_->ever_connected;
      --fleet_->in_flight;
    }
    ++fleet_->connected;
    fleet_->cv.notify_all();
  }
  void onMessage(const v1::ControllerMessage& m) override {
    ControllerSession* session = session_.load();
    if (!m.has_desired_state() || session == nullptr) return;
    const uint64_t generation = m.desired_state().generation();
    v1::AgentMessage report;
    auto* r = report.mutable_state_report();
    r->set_generation(generation);
    r->set_ok(true);
    r->set_enforced_generation(generation);
    r->set_ruleset_hash(fmt::format("loadgen-{}", generation));
    r->set_applied_at_unix_ms(nowUnixMs());
    session->send(report);
  }
  // The session this agent answers on (set once, before start()).
  void setSession(ControllerSession* session) { session_.store(session); }
  void onDisconnected(const std::string& reason, bool was_connected,
                      std::chrono::milliseconds) override {
    std::lock_guard<std::mutex> lock(fleet_->mu);
    if (was_connected) {
      --fleet_->connected;
      ++fleet_->disconnects;
    } else {
      ++fleet_->failures;
    }
    fleet_->last_failure = reason;
    fleet_->cv.notify_all();
  }

  void markStarted() { started_ = Clock::now(); }
  std::optional<Clock::duration> connectTime() const { return first_connect_; }

 private:
  std::string host_id_;
  Fleet* fleet_;
  Clock::time_point started_;
  std::optional<Clock::duration> first_connect_;  // GUARDED_BY(fleet_->mu)
  std::atomic<ControllerSession*> session_{nullptr};
};

void raiseNofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

int run(int argc, char** argv) {
  po::options_description o("bulkhead-loadgen options");
  o.add_options()
      ("controller", po::value<std::string>(), "controller ADDR:PORT")
      ("ca-dir", po::value<std::string>(), "DIR with the fleet CA: ca.crt, ca.key")
      ("n,n", po::value<int>(), "number of agent streams")
      ("hold", po::value<std::string>(), "hold the streams idle this long (default: until SIGINT)")
      ("controller-name", po::value<std::string>()->default_value("bulkhead-controller"),
       "TLS name expected in the controller certificate")
      ("prefix", po::value<std::string>()->default_value("loadgen"), "host id prefix")
      ("concurrency", po::value<int>()->default_value(256), "connects in flight at most")
      ("connect-timeout", po::value<std::string>()->default_value("10m"),
       "give up waiting for all streams after this")
      ("help", "print this help");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, o), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "bulkhead-loadgen: %s (see --help)\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << o;
    return 0;
  }
  auto fail = [](const std::string& line) {
    std::fprintf(stderr, "bulkhead-loadgen: %s\n", line.c_str());
    return 2;
  };
  if (!vm.count("controller")) return fail("--controller: required");
  if (!vm.count("ca-dir")) return fail("--ca-dir: required");
  if (!vm.count("n")) return fail("-n: required");
  auto hp = parseHostPort("--controller", vm["controller"].as<std::string>());
  if (!hp.ok()) return fail(fmt::format("{}", hp.status()));
  int n = vm["n"].as<int>();
  if (n < 1 || n > 200'000) return fail(fmt::format("-n: invalid value \"{}\": 1..200000", n));
  int concurrency = vm["concurrency"].as<int>();
  if (concurrency < 1) return fail("--concurrency: must be >= 1");
  std::optional<std::chrono::milliseconds> hold;
  if (vm.count("hold")) {
    auto d = parseDuration("--hold", vm["hold"].as<std::string>());
    if (!d.ok()) return fail(fmt::format("{}", d.status()));
    hold = *d;
  }
  auto connect_timeout = parseDuration("--connect-timeout", vm["connect-timeout"].as<std::string>());
  if (!connect_timeout.ok()) return fail(fmt::format("{}", connect_timeout.status()));

  std::filesystem::path ca_dir = vm["ca-dir"].as<std::string>();
  CertAndKey ca;
  for (auto [name, target] : {std::pair{"ca.crt", &ca.cert_pem}, std::pair{"ca.key", &ca.key_pem}}) {
    auto data = readFile(ca_dir / name);
    if (!data.ok()) return fail(fmt::format("--ca-dir: {}", data.status()));
    *target = *std::move(data);
  }
  auto ips = agent::resolveWithGetaddrinfo(hp->host);
  if (!ips.ok()) return fail(fmt::format("--controller: {}", ips.status()));
  agent::PinnedController pin{hp->host, hp->port, *ips, 0};
  auto targets = agent::grpcTargets(pin);

  raiseNofile();
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  // Mint identities first, so connect time measures the controller, not our key generation.
  auto t_mint = Clock::now();
  std::string prefix = vm["prefix"].as<std::string>();
  std::vector<SessionOptions> opts(static_cast<size_t>(n));
  std::vector<std::string> names(static_cast<size_t>(n));
  std::random_device rd;
  for (int i = 0; i < n; ++i) {
    names[i] = fmt::format("{}-{:06d}", prefix, i);
    auto cert = issueCert(ca, CertRequest{PeerKind::kAgent, names[i]});
    if (!cert.ok()) return fail(fmt::format("minting {}: {}", names[i], cert.status()));
    IdentityFiles id;
    id.ca_pem = ca.cert_pem;
    id.cert_pem = cert->cert_pem;
    id.key_pem = cert->key_pem;
    auto& so = opts[i];
    so.targets = targets;
    so.credentials = clientCredentials(id);
    so.ssl_target_name = vm["controller-name"].as<std::string>();
    so.seed = (static_cast<uint64_t>(rd()) << 32) ^ static_cast<uint64_t>(i);
    so.local_subchannel_pool = true;
    so.welcome_timeout = std::chrono::seconds(60);
  }
  std::printf("minted %d agent identities in %.2f s\n", n,
              std::chrono::duration<double>(Clock::now() - t_mint).count());
  std::fflush(stdout);

  Fleet fleet;
  TimerQueue timers;
  std::vector<std::unique_ptr<LoadAgent>> agents;
  std::vector<std::unique_ptr<ControllerSession>> sessions;
  agents.reserve(n);
  sessions.reserve(n);
  auto t0 = Clock::now();
  auto deadline = t0 + *connect_timeout;
  bool timed_out = false;
  for (int i = 0; i < n && !timed_out; ++i) {
    {
      std::unique_lock<std::mutex> lock(fleet.mu);
      if (!fleet.cv.wait_until(lock, deadline, [&] { return fleet.in_flight < concurrency; })) {
        timed_out = true;
        break;
      }
      ++fleet.in_flight;
    }
    agents.push_back(std::make_unique<LoadAgent>(names[i], &fleet));
    sessions.push_back(std::make_unique<ControllerSession>(opts[i], &timers, agents.back().get()));
    agents.back()->setSession(sessions.back().get());
    agents.back()->markStarted();
    sessions.back()->start();
    opts[i] = SessionOptions{};   // drop the credentials copy
  }
  {
    std::unique_lock<std::mutex> lock(fleet.mu);
    if (!fleet.cv.wait_until(lock, deadline, [&] { return fleet.ever_connected == n; })) {
      timed_out = true;
    }
  }
  double total_s = std::chrono::duration<double>(Clock::now() - t0).count();

  std::vector<double> per;
  std::string last_failure;
  int failures = 0;
  {
    std::lock_guard<std::mutex> lock(fleet.mu);
    for (const auto& a : agents) {
      if (auto d = a->connectTime()) per.push_back(ms(*d));
    }
    last_failure = fleet.last_failure;
    failures = fleet.failures;
  }
  std::sort(per.begin(), per.end());
  auto pct = [&](double p) {
    if (per.empty()) return 0.0;
    size_t idx = std::min(per.size() - 1, static_cast<size_t>(p * static_cast<double>(per.size())));
    return per[idx];
  };
  std::printf("connected %zu/%d streams in %.2f s (%.0f/s); per stream p50 %.1f ms, p99 %.1f ms, "
              "max %.1f ms; failed attempts %d\n",
              per.size(), n, total_s, static_cast<double>(per.size()) / total_s, pct(0.50),
              pct(0.99), per.empty() ? 0.0 : per.back(), failures);
  std::printf("RESULT n=%d connected=%zu connect_s=%.3f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", n,
              per.size(), total_s, pct(0.50), pct(0.99), per.empty() ? 0.0 : per.back());
  if (failures > 0) std::printf("last failed attempt: %s\n", last_failure.c_str());
  if (timed_out) std::printf("timed out before every stream connected\n");
  std::fflush(stdout);

  if (!timed_out) {
    std::printf("holding %d streams idle%s\n", n,
                hold ? fmt::format(" for {} s", hold->count() / 1000.0).c_str() : " until SIGINT");
    std::fflush(stdout);
    timespec ts{};
    timespec* tsp = nullptr;
    if (hold) {
      ts.tv_sec = static_cast<time_t>(hold->count() / 1000);
      ts.tv_nsec = static_cast<long>((hold->count() % 1000) * 1'000'000);
      tsp = &ts;
    }
    while (sigtimedwait(&stop, nullptr, tsp) < 0 && errno == EINTR) {
    }
    std::lock_guard<std::mutex> lock(fleet.mu);
    std::printf("after hold: %d connected, %d disconnects\n", fleet.connected, fleet.disconnects);
  }
  auto t_stop = Clock::now();
  sessions.clear();   // cancels every stream and waits for it
  std::printf("closed in %.2f s\n", std::chrono::duration<double>(Clock::now() - t_stop).count());
  return timed_out ? 1 : 0;
}

}  // namespace
}  // namespace bulkhead::bench

int main(int argc, char** argv) {
  bulkhead::tuneProcessRuntime();
  return bulkhead::bench::run(argc, argv);
}
