#include "controller/metrics/exposition.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "controller/playbook/playbook.h"
#include "controller/service/authorization.h"
#include "controller/service/record_text.h"

namespace bulkhead::controller::metrics {

namespace v1 = bulkhead::v1;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

// "SIGNAL_DISPOSITION_NO_MATCH" with prefix "SIGNAL_DISPOSITION_" reads "no-match".
std::string enumLabel(const std::string& name, std::string_view prefix) {
  std::string out = name.starts_with(prefix) ? name.substr(prefix.size()) : name;
  for (char& c : out)
    c = c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

ClientMetric gauge(double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  return m;
}

ClientMetric counter(double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = value;
  return m;
}

}  // namespace

CommandLabels commandLabels(const AuditTally& tally) {
  CommandLabels out;
  if (tally.action == auditAction(OperatorAction::kSubmitSignal)) {
    out.kind = tally.action;
    out.phase = "call";
    out.signal = true;
    out.outcome = "other";
    for (int d = v1::SignalDisposition_MIN; d <= v1::SignalDisposition_MAX; ++d) {
      if (!v1::SignalDisposition_IsValid(d) || d == v1::SIGNAL_DISPOSITION_UNSPECIFIED) continue;
      const auto disposition = static_cast<v1::SignalDisposition>(d);
      if (tally.outcome == dispositionText(disposition)) {
        out.outcome = enumLabel(v1::SignalDisposition_Name(disposition), "SIGNAL_DISPOSITION_");
      }
    }
    return out;
  }
  const AuditReading reading = readAuditText(tally.action, tally.outcome);
  if (reading.action == v1::AUDIT_ACTION_UNSPECIFIED) {
    out.kind = "other";
    out.phase = "other";
  } else {
    out.kind = enumLabel(v1::AuditAction_Name(reading.action), "AUDIT_ACTION_");
    out.phase = reading.phase == v1::AUDIT_PHASE_RESULT ? "result" : "call";
  }
  out.outcome = reading.outcome == v1::AUDIT_OUTCOME_UNSPECIFIED
                    ? "other"
                    : enumLabel(v1::AuditOutcome_Name(reading.outcome), "AUDIT_OUTCOME_");
  return out;
}

const std::vector<double>& PrometheusMetrics::operatorCallBuckets() {
  static const std::vector<double> kBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10,   30};
  return kBuckets;
}

const std::vector<double>& PrometheusMetrics::agentApplyBuckets() {
  static const std::vector<double> kBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                            0.05,   0.1,   0.25,   0.5,   1,    2.5};
  return kBuckets;
}

PrometheusMetrics::PrometheusMetrics(ScrapeSources sources)
    : sources_(std::move(sources)), registry_(std::make_shared<prometheus::Registry>()) {
  calls_ = &prometheus::BuildCounter()
                .Name("bulkhead_operator_calls_total")
                .Help("Operator gRPC calls answered, by method and status code")
                .Register(*registry_);
  call_seconds_ = &prometheus::BuildHistogram()
                       .Name("bulkhead_operator_call_duration_seconds")
                       .Help("Operator gRPC calls, start to status sent, by method")
                       .Register(*registry_);
  applies_ = &prometheus::BuildCounter()
                  .Name("bulkhead_agent_applies_total")
                  .Help("Agents' state reports (an enforcement of a desired state), by outcome")
                  .Register(*registry_);
  apply_seconds_ = &prometheus::BuildHistogram()
                        .Name("bulkhead_agent_apply_duration_seconds")
                        .Help(
                            "Agents' own time applying a desired state (the sum of the steps "
                            "of their state reports)")
                        .Register(*registry_)
                        .Add({}, agentApplyBuckets());
  flows_cut_ = &prometheus::BuildCounter()
                    .Name("bulkhead_flows_cut_total")
                    .Help("Flows (sockets and conntrack entries) agents reported cut")
                    .Register(*registry_)
                    .Add({});
  tamper_ = &prometheus::BuildCounter()
                 .Name("bulkhead_tamper_events_total")
                 .Help(
                     "Tamper events of a host: its table changed by someone else, or a "
                     "generation the controller never issued")
                 .Register(*registry_);
  // Both outcomes from the start, so an alert on the rate of failures has a series to read.
  applies_->Add({{"outcome", "ok"}});
  applies_->Add({{"outcome", "failed"}});
}

PrometheusMetrics::~PrometheusMetrics() = default;

void PrometheusMetrics::operatorCall(std::string_view method, std::string_view code,
                                     double seconds) {
  const std::string m(method);
  calls_->Add({{"method", m}, {"code", std::string(code)}}).Increment();
  call_seconds_->Add({{"method", m}}, operatorCallBuckets()).Observe(seconds);
}

void PrometheusMetrics::agentApplied(bool ok, double seconds, uint64_t flows_cut) {
  applies_->Add({{"outcome", ok ? "ok" : "failed"}}).Increment();
  apply_seconds_->Observe(seconds);
  flows_cut_->Increment(static_cast<double>(flows_cut));
}

void PrometheusMetrics::tamperEvent(std::string_view host_id) {
  tamper_->Add({{"host", std::string(host_id)}}).Increment();
}

std::string PrometheusMetrics::scrape() {
  std::lock_guard lock(scrape_mu_);
  std::vector<MetricFamily> families = registry_->Collect();

  auto certs = family("bulkhead_certificate_expiry_timestamp_seconds",
                      "When a certificate in use expires: the controller's own, and each "
                      "online agent's (of its current stream)",
                      MetricType::Gauge);
  if (sources_.controller_certificate) {
    const CertificateExpiry c = sources_.controller_certificate();
    certs.metric.push_back(gauge(static_cast<double>(c.not_after_unix_ms) / 1000.0,
                                 {{"kind", c.kind}, {"name", c.name}}));
  }
  if (sources_.hosts) {
    const auto hosts = sources_.hosts();
    auto online = family("bulkhead_host_online", "1 while the host's agent has a stream open",
                         MetricType::Gauge);
    auto isolated = family("bulkhead_host_isolated", "1 while the host's desired state isolates it",
                           MetricType::Gauge);
    auto by_state = family("bulkhead_hosts",
                           "Known hosts by connection (online, offline) and isolation (isolated, "
                           "open)",
                           MetricType::Gauge);
    auto streams = family("bulkhead_agent_streams", "Agent streams open", MetricType::Gauge);
    std::map<std::pair<std::string, std::string>, int> counts{{{"online", "isolated"}, 0},
                                                              {{"online", "open"}, 0},
                                                              {{"offline", "isolated"}, 0},
                                                              {{"offline", "open"}, 0}};
    int open_streams = 0;
    for (const auto& h : hosts) {
      online.metric.push_back(gauge(h.online() ? 1 : 0, {{"host", h.host_id()}}));
      isolated.metric.push_back(gauge(h.isolated() ? 1 : 0, {{"host", h.host_id()}}));
      ++counts[{h.online() ? "online" : "offline", h.isolated() ? "isolated" : "open"}];
      if (h.online()) ++open_streams;
      if (h.online() && h.cert_not_after_unix_ms() > 0) {
        certs.metric.push_back(gauge(static_cast<double>(h.cert_not_after_unix_ms()) / 1000.0,
                                     {{"kind", "agent"}, {"name", h.host_id()}}));
      }
    }
    for (const auto& [key, n] : counts) {
      by_state.metric.push_back(gauge(n, {{"connection", key.first}, {"isolation", key.second}}));
    }
    streams.metric.push_back(gauge(open_streams));
    families.push_back(std::move(by_state));
    families.push_back(std::move(online));
    families.push_back(std::move(isolated));
    families.push_back(std::move(streams));
  }
  families.push_back(std::move(certs));
  if (sources_.blocks_in_force) {
    auto blocks = family("bulkhead_blocks_in_force",
                         "Blocks in the hosts' desired states, not expired (one per host and "
                         "block)",
                         MetricType::Gauge);
    blocks.metric.push_back(gauge(static_cast<double>(sources_.blocks_in_force())));
    families.push_back(std::move(blocks));
  }
  if (sources_.store) {
    // The audit rows added since the last scrape, a bounded range a call (the first scrape
    // after a start reads the whole table, in steps).
    absl::StatusOr<StoreFigures> figures;
    do {
      figures = sources_.store(audit_seen_id_);
      if (!figures.ok()) break;
      for (const AuditTally& t : figures->audit) {
        const CommandLabels l = commandLabels(t);
        if (l.signal) {
          signals_[l.outcome] += t.rows;
        } else {
          commands_[{l.kind, l.phase, l.outcome}] += t.rows;
        }
        audit_rows_ += t.rows;
      }
      audit_seen_id_ = figures->last_audit_id;
    } while (figures->last_audit_id < figures->newest_audit_id);
    if (!figures.ok()) {
      spdlog::warn("metrics: store figures left out of this scrape: {}",
                   figures.status().ToString());
    } else {
      auto commands = family("bulkhead_commands_total",
                             "Actions recorded in the audit trail, all of it (operators' and "
                             "automatic, reads included), by kind, phase (call or result) and "
                             "outcome",
                             MetricType::Counter);
      for (const auto& [key, n] : commands_) {
        commands.metric.push_back(counter(static_cast<double>(n), {{"kind", std::get<0>(key)},
                                                                   {"phase", std::get<1>(key)},
                                                                   {"outcome", std::get<2>(key)}}));
      }
      auto signals = family("bulkhead_signals_total",
                            "Signals recorded in the audit trail, by disposition (suppressed: "
                            "every action stopped by a guardrail)",
                            MetricType::Counter);
      for (const auto& [disposition, n] : signals_) {
        signals.metric.push_back(counter(static_cast<double>(n), {{"disposition", disposition}}));
      }
      auto rows = family("bulkhead_audit_rows", "Rows in the audit trail", MetricType::Gauge);
      rows.metric.push_back(gauge(static_cast<double>(audit_rows_)));
      auto bytes =
          family("bulkhead_evidence_bytes", "Bytes of evidence bundles stored", MetricType::Gauge);
      bytes.metric.push_back(gauge(static_cast<double>(figures->evidence_bytes)));
      auto bundles =
          family("bulkhead_evidence_bundles", "Evidence bundles stored", MetricType::Gauge);
      bundles.metric.push_back(gauge(static_cast<double>(figures->evidence_bundles)));
      families.push_back(std::move(commands));
      families.push_back(std::move(signals));
      families.push_back(std::move(rows));
      families.push_back(std::move(bytes));
      families.push_back(std::move(bundles));
    }
  }
  if (sources_.evidence_free_bytes) {
    auto free = sources_.evidence_free_bytes();
    if (!free.ok()) {
      spdlog::warn("metrics: evidence free space left out of this scrape: {}",
                   free.status().ToString());
    } else {
      auto f =
          family("bulkhead_evidence_free_bytes",
                 "Bytes free to the controller on the evidence file system", MetricType::Gauge);
      f.metric.push_back(gauge(static_cast<double>(*free)));
      families.push_back(std::move(f));
    }
  }
  // A family with no series yet (no tamper event so far) is left out, as the registry does.
  std::erase_if(families, [](const MetricFamily& f) { return f.metric.empty(); });
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace bulkhead::controller::metrics
