// The controller's metrics: the audit tally's labels, the exposition read from fake sources and
// counted events, the store's figures and write probe (real SQLite), readiness, and the
// plain-HTTP listener on loopback.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "controller/metrics/exposition.h"
#include "controller/metrics/listener.h"
#include "controller/service/authorization.h"
#include "controller/store/sqlite_store.h"

namespace bulkhead::controller::metrics {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// A submitted signal's audit action ("signal").
std::string signalAction() { return auditAction(OperatorAction::kSubmitSignal); }

TEST(CommandLabels, ReadsTheAuditText) {
  auto call = commandLabels({"isolate", "ok", 3});
  EXPECT_EQ(call.kind, "isolate");
  EXPECT_EQ(call.phase, "call");
  EXPECT_EQ(call.outcome, "ok");
  EXPECT_FALSE(call.signal);
  auto result = commandLabels({"kill-sessions.result", "error: ", 1});
  EXPECT_EQ(result.kind, "kill-sessions");
  EXPECT_EQ(result.phase, "result");
  EXPECT_EQ(result.outcome, "error");
  auto unknown = commandLabels({"frobnicate", "maybe", 1});
  EXPECT_EQ(unknown.kind, "other");
  EXPECT_EQ(unknown.phase, "other");
  EXPECT_EQ(unknown.outcome, "other");
}

TEST(CommandLabels, SignalsByDisposition) {
  auto suppressed = commandLabels({signalAction(), "suppressed by a guardrail", 2});
  EXPECT_TRUE(suppressed.signal);
  EXPECT_EQ(suppressed.outcome, "suppressed");
  EXPECT_EQ(commandLabels({signalAction(), "no playbook matched", 1}).outcome, "no-match");
  EXPECT_EQ(commandLabels({signalAction(), "something new", 1}).outcome, "other");
}

TEST(Readiness, ReadyOnlyWhenEveryCheckPasses) {
  auto ready = readinessAnswer({{"store", absl::OkStatus()}, {"policies", absl::OkStatus()}});
  EXPECT_EQ(ready.http_status, 200);
  EXPECT_EQ(ready.body, "ready\n");
  EXPECT_EQ(readinessAnswer({}).http_status, 200);
  auto not_ready = readinessAnswer({{"store", absl::UnavailableError("disk I/O error")},
                                    {"policies", absl::OkStatus()},
                                    {"other", absl::InternalError("broken")}});
  EXPECT_EQ(not_ready.http_status, 503);
  EXPECT_EQ(not_ready.body, "store: disk I/O error\nother: broken\n");
}

v1::HostSummary host(const std::string& id, bool online, bool isolated, int64_t not_after_ms) {
  v1::HostSummary h;
  h.set_host_id(id);
  h.set_online(online);
  h.set_isolated(isolated);
  if (online) h.set_cert_not_after_unix_ms(not_after_ms);
  return h;
}

TEST(PrometheusMetrics, ScrapeReadsTheSourcesAndTheCountedEvents) {
  std::vector<int64_t> asked;
  int calls = 0;
  PrometheusMetrics m(ScrapeSources{
      .hosts =
          [] {
            return std::vector<v1::HostSummary>{host("web-01", true, true, 1'900'000'000'000),
                                                host("web-02", false, true, 0),
                                                host("db-01", true, false, 1'800'000'000'000)};
          },
      .blocks_in_force = [] { return size_t{4}; },
      .store = [&](int64_t after) -> absl::StatusOr<StoreFigures> {
        // The first scrape reads the table in two steps; the second reads one newer row.
        asked.push_back(after);
        StoreFigures f;
        switch (calls++) {
          case 0:
            f.audit = {{"isolate", "ok", 2},
                       {"isolate.result", "ok", 1},
                       {signalAction(), "suppressed by a guardrail", 1}};
            f.last_audit_id = 7;
            f.newest_audit_id = 9;
            break;
          case 1:
            f.audit = {{"release", "ok", 2}};
            f.last_audit_id = f.newest_audit_id = 9;
            break;
          default:
            f.audit = {{"isolate", "ok", 1}};
            f.last_audit_id = f.newest_audit_id = 10;
            break;
        }
        f.evidence_bytes = 1234;
        f.evidence_bundles = 1;
        return f;
      },
      .evidence_free_bytes = []() -> absl::StatusOr<uint64_t> { return uint64_t{5'000'000}; },
      .controller_certificate =
          [] {
            return CertificateExpiry{"controller", "ctl", 2'000'000'000'000};
          }});
  m.operatorCall("Isolate", "OK", 0.02);
  m.operatorCall("Isolate", "FAILED_PRECONDITION", 0.004);
  m.agentApplied(true, 0.003, 5);
  m.agentApplied(false, 0.2, 0);
  m.tamperEvent("web-01");

  const std::string first = m.scrape();
  EXPECT_THAT(first, HasSubstr("bulkhead_hosts{connection=\"online\",isolation=\"isolated\"} 1"));
  EXPECT_THAT(first, HasSubstr("bulkhead_hosts{connection=\"offline\",isolation=\"isolated\"} 1"));
  EXPECT_THAT(first, HasSubstr("bulkhead_hosts{connection=\"offline\",isolation=\"open\"} 0"));
  EXPECT_THAT(first, HasSubstr("bulkhead_host_isolated{host=\"web-02\"} 1"));
  EXPECT_THAT(first, HasSubstr("bulkhead_host_online{host=\"web-02\"} 0"));
  EXPECT_THAT(first, HasSubstr("bulkhead_agent_streams 2"));
  EXPECT_THAT(first, HasSubstr("bulkhead_blocks_in_force 4"));
  EXPECT_THAT(first, HasSubstr("bulkhead_certificate_expiry_timestamp_seconds{kind=\"agent\","
                               "name=\"web-01\"} 1900000000"));
  EXPECT_THAT(first, HasSubstr("bulkhead_certificate_expiry_timestamp_seconds{kind=\"controller\","
                               "name=\"ctl\"} 2000000000"));
  EXPECT_THAT(first, Not(HasSubstr("name=\"web-02\"")));  // offline: no certificate in use
  EXPECT_THAT(
      first,
      HasSubstr("bulkhead_commands_total{kind=\"isolate\",phase=\"call\",outcome=\"ok\"} 2"));
  EXPECT_THAT(first, HasSubstr("bulkhead_signals_total{disposition=\"suppressed\"} 1"));
  EXPECT_THAT(first, HasSubstr("bulkhead_audit_rows 6"));
  EXPECT_THAT(
      first,
      HasSubstr("bulkhead_commands_total{kind=\"release\",phase=\"call\",outcome=\"ok\"} 2"));
  EXPECT_THAT(first, HasSubstr("bulkhead_evidence_bytes 1234"));
  EXPECT_THAT(first, HasSubstr("bulkhead_evidence_free_bytes 5000000"));
  EXPECT_THAT(
      first,
      HasSubstr(
          "bulkhead_operator_calls_total{code=\"FAILED_PRECONDITION\",method=\"Isolate\"} 1"));
  EXPECT_THAT(
      first,
      HasSubstr(
          "bulkhead_operator_call_duration_seconds_bucket{method=\"Isolate\",le=\"0.005\"} 1"));
  EXPECT_THAT(
      first,
      HasSubstr(
          "bulkhead_operator_call_duration_seconds_bucket{method=\"Isolate\",le=\"0.025\"} 2"));
  EXPECT_THAT(first, HasSubstr("bulkhead_agent_applies_total{outcome=\"failed\"} 1"));
  EXPECT_THAT(first, HasSubstr("bulkhead_agent_apply_duration_seconds_bucket{le=\"0.005\"} 1"));
  EXPECT_THAT(first, HasSubstr("bulkhead_agent_apply_duration_seconds_count 2"));
  EXPECT_THAT(first, HasSubstr("bulkhead_flows_cut_total 5"));
  EXPECT_THAT(first, HasSubstr("bulkhead_tamper_events_total{host=\"web-01\"} 1"));

  // The second scrape reads only the audit rows after the first's, and adds them up.
  const std::string second = m.scrape();
  EXPECT_EQ(asked, (std::vector<int64_t>{0, 7, 9}));
  EXPECT_THAT(second, HasSubstr("bulkhead_audit_rows 7"));
  EXPECT_THAT(
      second,
      HasSubstr("bulkhead_commands_total{kind=\"isolate\",phase=\"call\",outcome=\"ok\"} 3"));
  EXPECT_THAT(second, HasSubstr("bulkhead_signals_total{disposition=\"suppressed\"} 1"));
}

TEST(PrometheusMetrics, AFailingSourceLeavesOnlyItsFiguresOut) {
  PrometheusMetrics m(ScrapeSources{.store = [](int64_t) -> absl::StatusOr<StoreFigures> {
    return absl::UnavailableError("disk I/O error");
  }});
  const std::string text = m.scrape();
  EXPECT_THAT(text, Not(HasSubstr("bulkhead_audit_rows")));
  EXPECT_THAT(text, HasSubstr("bulkhead_agent_applies_total{outcome=\"ok\"} 0"));
}

class MetricsStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-metrics-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = SqliteStore::create(dir_ / "controller.db");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void audit(const std::string& action, const std::string& outcome) {
    auto row = store_->appendAudit(AuditEntry{.at_unix_ms = 1,
                                              .operator_name = "alice",
                                              .action = action,
                                              .target = "web-01",
                                              .outcome = outcome});
    ASSERT_TRUE(row.ok()) << row.status();
  }
  fs::path dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(MetricsStoreTest, FiguresTallyTheAuditRowsAfterAnId) {
  audit("isolate", "ok");
  audit("isolate", "ok");
  audit("isolate.result", "error: host web-01 is offline");
  audit("isolate.result", "error: timed out");
  auto all = store_->figures(0);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->newest_audit_id, all->last_audit_id);
  EXPECT_EQ(all->evidence_bytes, 0u);
  ASSERT_EQ(all->audit.size(), 2u);
  EXPECT_EQ(all->audit[0].action, "isolate");
  EXPECT_EQ(all->audit[0].rows, 2u);
  EXPECT_EQ(all->audit[1].outcome, "error: ");  // both errors, one group
  EXPECT_EQ(all->audit[1].rows, 2u);

  audit("release", "ok");
  auto newer = store_->figures(all->last_audit_id);
  ASSERT_TRUE(newer.ok()) << newer.status();
  ASSERT_EQ(newer->audit.size(), 1u);
  EXPECT_EQ(newer->audit[0].action, "release");
  EXPECT_EQ(newer->last_audit_id, all->last_audit_id + 1);
  auto none = store_->figures(newer->last_audit_id);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->audit.empty());
  EXPECT_EQ(none->last_audit_id, newer->last_audit_id);  // the asked id, when none is newer
}

TEST_F(MetricsStoreTest, WriteProbeChangesNothing) {
  auto before = store_->schemaVersion();
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(store_->probeWrite().ok());
  EXPECT_EQ(*store_->schemaVersion(), *before);
  // A store that cannot write says so.
  ASSERT_TRUE(store_->execForTest("PRAGMA query_only = 1").ok());
  EXPECT_FALSE(store_->probeWrite().ok());
}

TEST(MetricsListener, ServesMetricsAndHealth) {
  bool store_ok = true;
  auto listener = Listener::start(ListenerOptions{
      .listen = {"127.0.0.1", 0},
      .scrape = [] { return std::string("bulkhead_audit_rows 3\n"); },
      .checks =
          [&store_ok] {
            return std::vector<ReadinessCheck>{
                {"store", store_ok ? absl::OkStatus() : absl::UnavailableError("read-only")}};
          }});
  ASSERT_TRUE(listener.ok()) << listener.status();
  httplib::Client client("127.0.0.1", (*listener)->port());
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->body, "bulkhead_audit_rows 3\n");
  EXPECT_THAT(metrics->get_header_value("Content-Type"), HasSubstr("version=0.0.4"));
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  store_ok = false;
  auto unready = client.Get("/readyz");
  ASSERT_TRUE(unready);
  EXPECT_EQ(unready->status, 503);
  EXPECT_EQ(unready->body, "store: read-only\n");
  auto post = client.Post("/metrics", "", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  auto missing = client.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  (*listener)->stop();
}

// A stop() before the listening thread runs its loop used to be lost, and stop() then waited
// for ever.
TEST(MetricsListener, StopRightAfterStartReturns) {
  for (int i = 0; i < 100; ++i) {
    auto listener = Listener::start(ListenerOptions{.listen = {"127.0.0.1", 0}});
    ASSERT_TRUE(listener.ok()) << listener.status();
    (*listener)->stop();
  }
}

TEST(MetricsListener, AnAddressInUseNamesTheFlag) {
  auto first = Listener::start(ListenerOptions{.listen = {"127.0.0.1", 0}});
  ASSERT_TRUE(first.ok());
  auto second = Listener::start(
      ListenerOptions{.listen = {"127.0.0.1", static_cast<uint16_t>((*first)->port())}});
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("--metrics-listen"));
}

}  // namespace
}  // namespace bulkhead::controller::metrics
