// Benchmark (a program, not a test): time SockDiagFlowKiller::cut() of N established loopback
// TCP connections inside a private network namespace. Prints the median of several runs.
//   flow_kill_bench [--flows N] [--runs R] [--conntrack] [--owners]
// --conntrack also loads a conntrack-using rule first, so every connection has a conntrack
// entry that cut() deletes too; --owners resolves each socket's owning pid first.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "agent/linux/nftables_firewall.h"
#include "agent/linux/sock_diag_flow_killer.h"
#include "tests/kernel/loopback_conns.h"
#include "tests/kernel/private_netns.h"

using bulkhead::agent::Flow;
using Clock = std::chrono::steady_clock;

namespace {

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "flow_kill_bench needs root (it runs in a private network namespace)\n");
    return 2;
  }
  if (!bulkhead::test::enterPrivateNetns()) return 1;
  size_t flows = 10000;
  int runs = 5;
  bool conntrack = false;
  bool owners = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--flows" && i + 1 < argc) {
      flows = std::strtoul(argv[++i], nullptr, 10);
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (a == "--conntrack") {
      conntrack = true;
    } else if (a == "--owners") {
      owners = true;
    } else {
      std::fprintf(stderr,
                   "usage: flow_kill_bench [--flows N] [--runs R] [--conntrack] [--owners]\n");
      return 2;
    }
  }
  // One fd per client; the server sides stay established in the listener's accept queue (not
  // accepted), so N connections need N fds, not 2N (the hard limit may be 20,000 without
  // CAP_SYS_RESOURCE). Both ends are live TCP sockets in the kernel.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < flows + 64) {
    std::fprintf(stderr, "RLIMIT_NOFILE %llu is too small for %zu flows (needs %zu)\n",
                 static_cast<unsigned long long>(rl.rlim_cur), flows, flows + 64);
    return 1;
  }
  // This private namespace's accept backlog limit (per network namespace).
  if (FILE* f = std::fopen("/proc/sys/net/core/somaxconn", "w")) {
    std::fprintf(f, "%zu\n", flows + 1024);
    std::fclose(f);
  }
  auto fw = bulkhead::agent::NftablesFirewall::create();
  if (!fw.ok()) return 1;
  if (conntrack &&
      !(*fw)
           ->runRaw("table inet benchct {\n chain in {\n  type filter hook input priority 0;"
                    " policy accept;\n  ct state established accept\n }\n}\n")
           .ok()) {
    std::fprintf(stderr, "cannot load the conntrack rule\n");
    return 1;
  }
  bulkhead::agent::SockDiagFlowKiller::Options options;
  options.resolve_owners = owners;
  auto killer = bulkhead::agent::SockDiagFlowKiller::create(options);
  if (!killer.ok()) {
    std::fprintf(stderr, "%s\n", std::string(killer.status().message()).c_str());
    return 1;
  }

  std::vector<double> times, setup_times;
  size_t last_sockets = 0, last_ct = 0, last_errors = 0;
  for (int r = 0; r < runs; ++r) {
    auto s0 = Clock::now();
    bulkhead::test::Fd listener =
        bulkhead::test::listenLoopback(AF_INET, static_cast<int>(flows + 1024));
    const uint16_t port = bulkhead::test::localPort(listener.get());
    std::string err;
    auto conns = bulkhead::test::connectMany(AF_INET, listener, flows, &err, /*accept=*/false);
    if (conns.size() != flows) {
      std::fprintf(stderr, "only %zu connections: %s\n", conns.size(), err.c_str());
      return 1;
    }
    setup_times.push_back(ms(Clock::now() - s0));
    // Cut the client side of every connection (the server side gets a RST).
    auto t0 = Clock::now();
    auto report =
        (*killer)->cut([port](const Flow& f) { return f.remote_port == port; }, /*dry_run=*/false);
    auto t1 = Clock::now();
    if (!report.ok()) {
      std::fprintf(stderr, "cut: %s\n", std::string(report.status().message()).c_str());
      return 1;
    }
    last_sockets = report->sockets_destroyed.size();
    last_ct = report->conntrack_deleted.size();
    last_errors = report->errors.size();
    if (last_sockets != flows) {
      std::fprintf(stderr, "run %d: destroyed %zu of %zu sockets, %zu errors%s%s\n", r,
                   last_sockets, flows, last_errors, last_errors ? ": " : "",
                   last_errors ? report->errors[0].c_str() : "");
      return 1;
    }
    times.push_back(ms(t1 - t0));
    std::printf("run %d: cut %zu sockets + %zu conntrack entries in %.1f ms (setup %.0f ms)\n", r,
                last_sockets, last_ct, times.back(), setup_times.back());
    conns.clear();  // close everything before the next run
    listener.reset();
  }
  std::printf(
      "flow_kill_bench: %zu established loopback TCP connections%s, %d runs: "
      "median cut() %.1f ms (dump%s + select + SOCK_DESTROY%s), target <= 1000 ms\n",
      flows, conntrack ? " with conntrack entries" : "", runs, median(times),
      owners ? " + owner pids from /proc" : "", conntrack ? " + conntrack delete" : "");
  return 0;
}
