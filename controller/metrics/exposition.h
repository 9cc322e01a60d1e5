// The controller's Prometheus metrics (README.md, "Metrics and health"): the events counted as
// they happen (Metrics, kept in a prometheus-cpp Registry) and the figures read at each scrape
// from the fleet and the store (ScrapeSources), served as the text exposition format 0.0.4.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/operator.pb.h"
#include "controller/service/metrics.h"
#include "controller/store/store.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Histogram;
}  // namespace prometheus

namespace bulkhead::controller::metrics {

// A certificate the controller reports the expiry of.
struct CertificateExpiry {
  std::string kind;  // "controller" or "agent"
  std::string name;  // the controller's name or the host id
  int64_t not_after_unix_ms = 0;
};

// What a scrape reads, each called on the scraping thread (never under a lock of this class's
// callers). An unset source leaves its metrics out; a source that fails leaves its metrics out
// of that scrape and is logged.
struct ScrapeSources {
  // Every known host (HostDirectory::listHosts): online, isolated, agent certificate expiry.
  std::function<std::vector<bulkhead::v1::HostSummary>()> hosts;
  // Blocks in force (Fleet::blocksInForce).
  std::function<size_t()> blocks_in_force;
  // Store::figures: audit rows after the given id tallied, evidence stored.
  std::function<absl::StatusOr<StoreFigures>(int64_t audit_after_id)> store;
  // Bytes free to the controller on the evidence file system.
  std::function<absl::StatusOr<uint64_t>()> evidence_free_bytes;
  // The controller's own certificate (it changes on SIGHUP).
  std::function<CertificateExpiry()> controller_certificate;
};

// Thread-safe. The Metrics methods only touch prometheus-cpp's counters (atomics; a family's
// own lock when a label set is new); scrape() runs one at a time.
class PrometheusMetrics final : public Metrics {
 public:
  explicit PrometheusMetrics(ScrapeSources sources);
  ~PrometheusMetrics() override;

  void operatorCall(std::string_view method, std::string_view code, double seconds) override;
  void agentApplied(bool ok, double seconds, uint64_t flows_cut) override;
  void tamperEvent(std::string_view host_id) override;

  // Every metric as the text exposition format, the sources read now.
  std::string scrape();

  // The histograms' upper bounds, in seconds.
  static const std::vector<double>& operatorCallBuckets();
  static const std::vector<double>& agentApplyBuckets();

 private:
  const ScrapeSources sources_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* calls_;
  prometheus::Family<prometheus::Histogram>* call_seconds_;
  prometheus::Family<prometheus::Counter>* applies_;
  prometheus::Histogram* apply_seconds_;
  prometheus::Counter* flows_cut_;
  prometheus::Family<prometheus::Counter>* tamper_;
  std::mutex scrape_mu_;  // one scrape at a time; guards what follows
  int64_t audit_seen_id_ = 0;
  uint64_t audit_rows_ = 0;  // the audit table is append-only: the rows tallied so far
  // Audit rows by (kind, phase, outcome), and submitted signals by disposition, since start.
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> commands_;
  std::map<std::string, uint64_t> signals_;
};

// The labels of an audit tally row (Store::figures): the action without its result suffix, the
// phase ("call" or "result") and the outcome ("ok", "accepted", "denied", "error"), each
// "other" for text this controller does not write; for submitted signals the outcome is their
// disposition. Pure.
struct CommandLabels {
  std::string kind;
  std::string phase;
  std::string outcome;
  bool signal = false;  // a submitted signal's row: `outcome` is its disposition
};
CommandLabels commandLabels(const AuditTally& tally);

}  // namespace bulkhead::controller::metrics
