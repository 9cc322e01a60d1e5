// Signal ingest benchmark (a program, not a test): how many signals per second one controller's
// SignalService accepts, deduplicates, decides under the guardrails and records durably (the
// real SQLite store with its audit chain, the repository's playbooks and guardrails), with
// CPU and memory. The fleet is a fake directory of --hosts hosts and the actuator answers at
// once, so the figure is the intake's own cost, not the fleet's.
//
// Each run submits --signals fail2ban "sshd" bans from --producers threads, at most --window
// in flight; --dup-ratio of them repeat an earlier ban's address (a replayed idempotency key:
// answered as duplicate, audited, not acted on). The baseline, measured in the same run, is
// the store's single-row durable commit rate (appendAudit, one transaction each): what the
// intake would reach if every signal were one commit.
//
// With --tenants N the hosts are spread over N tenants (default, t1, ...), every other tenant
// opting into all the shared playbooks (a copy of --policy-dir with tenants/tK.yaml), and each
// ban is reported by a host of tenant (address % N): N engines, each with its own rate caps.
//
//   build/bench/bulkhead-signal-bench [--signals 20000] [--runs 5] [--hosts 50]
//       [--dup-ratio 0.5] [--producers 4] [--window 4096] [--policy-dir policies] [--tmp /tmp]
//       [--tenants 1]
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/format.h"
#include "controller/service/signals.h"
#include "controller/store/sqlite_store.h"

namespace {

namespace bh = bulkhead::controller;
namespace v1 = bulkhead::v1;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

class WallClock final : public bh::Clock {
 public:
  int64_t nowUnixMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

// Host i is of tenant i % tenants ("default" for 0, else "tK").
std::string tenantName(int k) { return k == 0 ? "default" : fmt::format("t{}", k); }

class Directory final : public bh::HostDirectory {
 public:
  Directory(int hosts, int tenants) {
    for (int i = 0; i < hosts; ++i) {
      v1::HostSummary h;
      h.set_host_id(fmt::format("host-{:03}", i));
      h.set_tenant(tenantName(i % tenants));
      h.set_hostname(h.host_id());
      (*h.mutable_labels())["role"] = i % 10 == 0 ? "db" : "web";
      h.add_addresses(fmt::format("10.77.{}.{}", 1 + i / 250, 1 + i % 250));
      hosts_.push_back(h);
    }
  }
  std::vector<v1::HostSummary> listHosts(const bulkhead::Labels&) override { return hosts_; }
  std::optional<v1::HostStatus> getHost(const std::string&) override { return std::nullopt; }
  bool applyLabels(const std::string&, const bulkhead::Labels&, const std::string&) override {
    return false;  // not used here
  }
  bool online(const std::string&) override { return true; }

 private:
  std::vector<v1::HostSummary> hosts_;
};

class InstantActuator final : public bh::SignalActuator {
 public:
  void start(const bh::Caller&, const bh::PlannedAction&, const std::string&,
             std::function<void(const absl::Status&, const std::string&)> done) override {
    started.fetch_add(1);
    done(absl::OkStatus(), "hosts enforced");
  }
  std::atomic<uint64_t> started{0};
};

struct Usage {
  double cpu_s = 0;
  long max_rss_kb = 0;
};

Usage usage() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return {secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss};
}

long currentRssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

double secondsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

struct Options {
  int signals = 20000;
  int runs = 5;
  int hosts = 50;
  double dup_ratio = 0.5;
  int producers = 4;
  int window = 4096;
  std::string policy_dir = "policies";
  std::string tmp = "/tmp";
  int tenants = 1;
};

struct RunResult {
  double signals_per_s = 0;
  double baseline_commits_per_s = 0;
  double cpu_percent = 0;  // of one core, during the ingest
  long rss_kb = 0;         // after the run
  uint64_t acted = 0, duplicate = 0, other = 0, failed = 0, started = 0;
};

// The store's single-row durable commit rate: `n` audit rows, one transaction each.
double baselineCommitsPerSecond(bh::Store& store, int n) {
  auto t0 = SteadyClock::now();
  for (int i = 0; i < n; ++i) {
    (void)store.appendAudit(bh::AuditEntry{.at_unix_ms = i,
                                           .operator_name = "bench",
                                           .action = "signal",
                                           .target = "baseline",
                                           .outcome = "ok"});
  }
  return n / secondsSince(t0);
}

RunResult runOnce(const Options& o, int run) {
  const fs::path dir = fs::path(o.tmp) / fmt::format("bh-signal-bench-{}-{}", ::getpid(), run);
  fs::remove_all(dir);
  fs::create_directories(dir);
  RunResult r;
  {
    auto store = bh::SqliteStore::create(dir / "controller.db");
    if (!store.ok()) {
      std::fprintf(stderr, "store: %s\n", std::string(store.status().message()).c_str());
      std::exit(1);
    }
    r.baseline_commits_per_s = baselineCommitsPerSecond(**store, 500);

    WallClock clock;
    Directory directory(o.hosts, o.tenants);
    InstantActuator actuator;
    bh::SignalServiceOptions options{.policy_dir = o.policy_dir};
    if (o.tenants > 1) {
      // The shipped playbooks for every tenant: each opts into all of them.
      const fs::path policies = dir / "policies";
      fs::copy(o.policy_dir, policies, fs::copy_options::recursive);
      fs::create_directories(policies / "tenants");
      for (int k = 1; k < o.tenants; ++k) {
        std::ofstream(policies / "tenants" / (tenantName(k) + ".yaml")) << "playbooks: all\n";
      }
      options.policy_dir = policies.string();
    }
    options.blocks.controller_ips = {"10.77.0.1"};
    bh::SignalService service(clock, **store, directory, actuator, options);
    if (absl::Status s = service.reload(); !s.ok()) {
      std::fprintf(stderr, "playbooks: %s\n", std::string(s.message()).c_str());
      std::exit(1);
    }

    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0;
    int answered = 0;
    std::atomic<uint64_t> acted{0}, duplicate{0}, other{0}, failed{0};
    std::atomic<int> next{0};
    const int fresh_every = o.dup_ratio >= 1 ? 1 << 30 : static_cast<int>(1 / (1 - o.dup_ratio));

    const Usage u0 = usage();
    const auto t0 = SteadyClock::now();
    auto produce = [&] {
      for (int i = next.fetch_add(1); i < o.signals; i = next.fetch_add(1)) {
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return in_flight < o.window; });
          ++in_flight;
        }
        // Every fresh_every-th signal is a new address; the others repeat the last new one.
        const int n = (i / fresh_every) + run * 1000000;
        v1::Signal s;
        s.set_source(v1::SIGNAL_SOURCE_FAIL2BAN);
        s.set_rule("sshd");
        s.add_addresses(fmt::format("198.18.{}.{}", (n >> 8) & 0xff, n & 0xff));
        s.set_ttl_seconds(600);
        s.set_idempotency_key(fmt::format("ban-{}", n));
        // One tenant: host-001 reports all; else a host of tenant n % tenants (so a replayed
        // key comes from the same tenant, and stays a duplicate).
        const std::string host =
            o.tenants == 1 ? "host-001" : fmt::format("host-{:03}", n % o.tenants);
        service.submit(bh::SignalDelivery{.delivered_by = "host:" + host, .reporting_host = host},
                       std::move(s), [&](absl::StatusOr<bh::SignalOutcome> out) {
                         if (!out.ok()) {
                           failed.fetch_add(1);
                         } else if (out->disposition == v1::SIGNAL_DISPOSITION_DUPLICATE) {
                           duplicate.fetch_add(1);
                         } else if (out->disposition == v1::SIGNAL_DISPOSITION_ACTED) {
                           acted.fetch_add(1);
                         } else {
                           other.fetch_add(1);
                         }
                         std::lock_guard lock(mu);
                         --in_flight;
                         ++answered;
                         cv.notify_all();
                       });
      }
    };
    std::vector<std::thread> producers;
    producers.reserve(static_cast<size_t>(o.producers));
    for (int p = 0; p < o.producers; ++p) producers.emplace_back(produce);
    for (std::thread& t : producers) t.join();
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return answered == o.signals; });
    }
    const double seconds = secondsSince(t0);
    const Usage u1 = usage();
    service.shutdown();
    r.signals_per_s = o.signals / seconds;
    r.cpu_percent = 100.0 * (u1.cpu_s - u0.cpu_s) / seconds;
    r.rss_kb = currentRssKb();
    r.acted = acted;
    r.duplicate = duplicate;
    r.other = other;
    r.failed = failed;
    r.started = actuator.started;
  }
  fs::remove_all(dir);
  return r;
}

template <typename T, typename F>
void printStat(const char* name, std::vector<T> runs, F value, const char* unit, int decimals = 0) {
  std::vector<double> v;
  v.reserve(runs.size());
  for (const T& r : runs) v.push_back(value(r));
  std::sort(v.begin(), v.end());
  std::printf("%-40s min %10.*f  median %10.*f  max %10.*f %s\n", name, decimals, v.front(),
              decimals, v[v.size() / 2], decimals, v.back(), unit);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--signals") o.signals = std::atoi(value);
    else if (flag == "--runs") o.runs = std::atoi(value);
    else if (flag == "--hosts") o.hosts = std::atoi(value);
    else if (flag == "--dup-ratio") o.dup_ratio = std::atof(value);
    else if (flag == "--producers") o.producers = std::atoi(value);
    else if (flag == "--window") o.window = std::atoi(value);
    else if (flag == "--policy-dir") o.policy_dir = value;
    else if (flag == "--tmp") o.tmp = value;
    else if (flag == "--tenants")
      o.tenants = std::atoi(value);
    else {
      std::fprintf(stderr, "unknown flag %s (see the comment at the top of signal_ingest.cc)\n",
                   flag.c_str());
      return 2;
    }
  }
  if (o.signals <= 0 || o.runs <= 0 || o.hosts <= 0 || o.producers <= 0 || o.window <= 0 ||
      o.tenants <= 0 || o.tenants > o.hosts || o.dup_ratio < 0 || o.dup_ratio >= 1) {
    std::fprintf(stderr,
                 "counts must be positive, --tenants at most --hosts, --dup-ratio in [0, 1)\n");
    return 2;
  }
  std::printf(
      "signal ingest: %d signals x %d runs, %d hosts in %d tenants, %.0f%% duplicates, "
      "%d producers, window %d, store in %s\n",
      o.signals, o.runs, o.hosts, o.tenants, o.dup_ratio * 100, o.producers, o.window,
      o.tmp.c_str());
  std::vector<RunResult> runs;
  for (int run = 0; run < o.runs; ++run) {
    RunResult r = runOnce(o, run);
    std::printf("run %d: %.0f signals/s (acted %lu, duplicate %lu, other %lu, failed %lu; "
                "actions started %lu), baseline %.0f commits/s, cpu %.0f%%, rss %ld KiB\n",
                run + 1, r.signals_per_s, static_cast<unsigned long>(r.acted),
                static_cast<unsigned long>(r.duplicate), static_cast<unsigned long>(r.other),
                static_cast<unsigned long>(r.failed), static_cast<unsigned long>(r.started),
                r.baseline_commits_per_s, r.cpu_percent, r.rss_kb);
    runs.push_back(r);
  }
  printStat("signals accepted per second", runs, [](const RunResult& r) { return r.signals_per_s; },
            "/s");
  printStat("baseline: one-row commits/s", runs,
            [](const RunResult& r) { return r.baseline_commits_per_s; }, "/s");
  printStat(
      "ratio signals / baseline commits", runs,
      [](const RunResult& r) { return r.signals_per_s / r.baseline_commits_per_s; }, "x", 1);
  printStat("cpu during ingest (% of one core)", runs,
            [](const RunResult& r) { return r.cpu_percent; }, "%");
  printStat("rss after the run", runs, [](const RunResult& r) { return double(r.rss_kb); },
            "KiB");
  return 0;
}
