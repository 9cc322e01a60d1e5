// Audit listing benchmark (a program, not a test): what one page of `bulkhead audit` costs
// the store in a large table, per tenant. The table is filled in one statement with --rows
// rows, one in 100 of tenant acme and the rest of default (tenant beta has none), and a page
// of 100 rows is read through SqliteStore::listAuditPage, newest first and from the middle
// of the table, for: the whole table (the install's admin with --tenant '*', and every
// listing before tenants: the baseline), default's rows, acme's, beta's (empty), and default
// and acme with the caller's own calls across tenants (an operator with both, '*').
//
//   build/bench/bulkhead-audit-bench [--rows 1000000] [--runs 5] [--calls 50] [--tmp /tmp]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/format.h"
#include "controller/store/sqlite_store.h"

namespace {

namespace bh = bulkhead::controller;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

struct Case {
  const char* name;
  bh::AuditScope scope;
};

// Microseconds per listAuditPage call, over `calls` calls.
double perCall(bh::SqliteStore& store, const bh::AuditScope& scope, int64_t before, int calls) {
  const auto t0 = SteadyClock::now();
  for (int i = 0; i < calls; ++i) {
    auto rows = store.listAuditPage(before, 100, scope);
    if (!rows.ok()) {
      std::fprintf(stderr, "listAuditPage: %s\n", std::string(rows.status().message()).c_str());
      std::exit(1);
    }
  }
  return std::chrono::duration<double, std::micro>(SteadyClock::now() - t0).count() / calls;
}

void printStat(const std::string& name, std::vector<double> v, double baseline_median) {
  std::sort(v.begin(), v.end());
  const double median = v[v.size() / 2];
  std::printf("%-52s min %9.1f  median %9.1f  max %9.1f us   %.2fx\n", name.c_str(), v.front(),
              median, v.back(), median / baseline_median);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 1000000;
  int runs = 5, calls = 50;
  std::string tmp = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--rows") rows = std::atoll(argv[i + 1]);
    if (flag == "--runs") runs = std::atoi(argv[i + 1]);
    if (flag == "--calls") calls = std::atoi(argv[i + 1]);
    if (flag == "--tmp") tmp = argv[i + 1];
  }
  const fs::path dir = fs::path(tmp) / fmt::format("bh-audit-bench-{}", ::getpid());
  fs::create_directories(dir);
  auto store = bh::SqliteStore::create(dir / "controller.db");
  if (!store.ok()) {
    std::fprintf(stderr, "store: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  // Rows as the chain would hold them, without hashing each (listing never reads the hashes).
  const auto fill = (*store)->execForTest(fmt::format(
      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {}) "
      "INSERT INTO audit(id, at_unix_ms, operator, action, target, reason, outcome, detail, "
      "prev_hash, hash, mac, tenant) SELECT i, 1700000000000 + i, 'op', 'isolate', 'web-01', "
      "'INC-1', 'ok', 'hosts web-01; generations web-01=3', '', '', '', "
      "CASE WHEN i % 100 = 0 THEN 'acme' ELSE 'default' END FROM c",
      rows));
  if (!fill.ok()) {
    std::fprintf(stderr, "fill: %s\n", std::string(fill.message()).c_str());
    return 1;
  }
  const std::vector<Case> cases = {
      {"every row (baseline)", {}},
      {"tenant default (99% of the rows)", {.tenants = {"default"}}},
      {"tenant acme (1%)", {.tenants = {"acme"}}},
      {"tenant beta (no rows)", {.tenants = {"beta"}}},
      {"default and acme, own cross-tenant calls",
       {.tenants = {"default", "acme"}, .cross_tenant_operator = "ann"}},
  };
  std::printf("%lld audit rows, pages of 100, %d runs of %d calls each\n",
              static_cast<long long>(rows), runs, calls);
  for (const int64_t before : {int64_t{0}, rows / 2}) {
    std::vector<std::vector<double>> results(cases.size());
    for (int r = 0; r < runs; ++r) {
      for (size_t c = 0; c < cases.size(); ++c) {
        results[c].push_back(perCall(**store, cases[c].scope, before, calls));
      }
    }
    std::vector<double> base = results[0];
    std::sort(base.begin(), base.end());
    std::printf("%s\n", before == 0 ? "newest page" : "a page from the middle (before_id)");
    for (size_t c = 0; c < cases.size(); ++c) {
      printStat(fmt::format("  {}", cases[c].name), results[c], base[base.size() / 2]);
    }
  }
  store->reset();
  fs::remove_all(dir);
  return 0;
}
