// Enrollment benchmark (a program, not a test): how fast one controller's EnrollmentService
// enrolls servers with join tokens, on the real SQLite store with its audit chain. Each run
// makes one token with --hosts uses and enrolls --hosts new host ids with it, one after
// another (as the enrollment listener's calls are handled): check the token, sign the
// server's request with the fleet CA, and commit the use, the enrollment and the audit row in
// one durable transaction. The servers' keys and requests are made before the clock starts
// (that work is on each server, not on the controller).
//
// Baseline, in the same run: the same number of `pki issue`-style certificates (issueCert:
// a fresh key and a signature, no store), i.e. the CA's own cost.
//
//   build/bench/bulkhead-enroll-bench [--hosts 1000] [--runs 5] [--tmp /tmp]
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/format.h"
#include "common/pki/pki.h"
#include "controller/service/enrollment.h"
#include "controller/store/sqlite_store.h"

namespace {

namespace bh = bulkhead::controller;
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

struct Run {
  double total_s = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  double baseline_s = 0;
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

Run once(int hosts, const fs::path& tmp, const bulkhead::CertAndKey& ca, int index) {
  const fs::path dir = tmp / fmt::format("bh-enroll-bench-{}-{}", ::getpid(), index);
  fs::remove_all(dir);
  fs::create_directories(dir);
  Run r;
  {
    WallClock clock;
    auto store = bh::SqliteStore::create(dir / "db.sqlite");
    if (!store.ok()) {
      std::fprintf(stderr, "store: %s\n", std::string(store.status().message()).c_str());
      std::exit(1);
    }
    bh::EnrollmentService service(
        clock, **store,
        bh::EnrollmentOptions{.ca = ca,
                              .controller_name = "bulkhead-controller",
                              .enroll_addresses = {"10.77.0.1:7444"},
                              .controller_addresses = {"10.77.0.1:7443"}});
    const bh::Caller admin{
        .audit_name = "bench", .is_operator = true, .role = bulkhead::Role::kAdmin};
    auto token =
        service.createToken(admin, {{"role", "web"}}, 3600, static_cast<uint32_t>(hosts), "bench");
    if (!token.ok()) {
      std::fprintf(stderr, "token: %s\n", std::string(token.status().message()).c_str());
      std::exit(1);
    }
    std::vector<std::string> csrs;
    csrs.reserve(static_cast<size_t>(hosts));
    for (int i = 0; i < hosts; ++i) csrs.push_back(bulkhead::createKeyAndCsr("x")->csr_pem);
    std::vector<double> each_ms;
    each_ms.reserve(static_cast<size_t>(hosts));
    const auto start = SteadyClock::now();
    for (int i = 0; i < hosts; ++i) {
      const auto t0 = SteadyClock::now();
      auto answer = service.enroll(token->text, fmt::format("web-{:05}", i), csrs[i], "bench");
      if (!answer.ok()) {
        std::fprintf(stderr, "enroll %d: %s\n", i, std::string(answer.status().message()).c_str());
        std::exit(1);
      }
      each_ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
    }
    r.total_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
    r.p50_ms = percentile(each_ms, 0.50);
    r.p99_ms = percentile(each_ms, 0.99);
    r.max_ms = *std::max_element(each_ms.begin(), each_ms.end());
  }
  const auto b0 = SteadyClock::now();
  for (int i = 0; i < hosts; ++i) {
    (void)bulkhead::issueCert(ca, bulkhead::CertRequest{.kind = bulkhead::PeerKind::kAgent,
                                                        .name = fmt::format("web-{:05}", i)});
  }
  r.baseline_s = std::chrono::duration<double>(SteadyClock::now() - b0).count();
  fs::remove_all(dir);
  return r;
}

template <typename F>
void printStat(const char* name, const std::vector<Run>& runs, F value, const char* unit,
               int decimals) {
  std::vector<double> v;
  v.reserve(runs.size());
  for (const Run& r : runs) v.push_back(value(r));
  std::sort(v.begin(), v.end());
  std::printf("%-44s min %9.*f  median %9.*f  max %9.*f %s\n", name, decimals, v.front(), decimals,
              v[v.size() / 2], decimals, v.back(), unit);
}

}  // namespace

int main(int argc, char** argv) {
  int hosts = 1000, runs = 5;
  fs::path tmp = fs::temp_directory_path();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--hosts") {
      hosts = std::atoi(argv[i + 1]);
    } else if (flag == "--runs") {
      runs = std::atoi(argv[i + 1]);
    } else if (flag == "--tmp") {
      tmp = argv[i + 1];
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (hosts < 1 || runs < 1) {
    std::fprintf(stderr, "--hosts and --runs must be at least 1\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);  // one info line per enrollment otherwise
  auto ca = bulkhead::createCa("bench-ca", std::chrono::hours(24));
  std::vector<Run> all;
  all.reserve(static_cast<size_t>(runs));
  for (int i = 0; i < runs; ++i) all.push_back(once(hosts, tmp, *ca, i));
  std::printf("%d enrollments a run, %d runs (one token, --uses %d; SQLite in %s)\n", hosts, runs,
              hosts, tmp.c_str());
  printStat(
      "enroll all (s)", all, [](const Run& r) { return r.total_s; }, "s", 3);
  printStat(
      "enrollments per second", all, [hosts](const Run& r) { return hosts / r.total_s; }, "/s", 0);
  printStat(
      "one enrollment p50", all, [](const Run& r) { return r.p50_ms; }, "ms", 3);
  printStat(
      "one enrollment p99", all, [](const Run& r) { return r.p99_ms; }, "ms", 3);
  printStat(
      "one enrollment max", all, [](const Run& r) { return r.max_ms; }, "ms", 3);
  printStat(
      "baseline: issueCert x N (s)", all, [](const Run& r) { return r.baseline_s; }, "s", 3);
  printStat(
      "enroll / baseline", all, [](const Run& r) { return r.total_s / r.baseline_s; }, "x", 2);
  return 0;
}
