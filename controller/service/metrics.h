// The figures the controller counts as they happen, for its Prometheus metrics
// (controller/metrics/). What can be read at a scrape (hosts, blocks, audit rows, evidence)
// is read then, not counted here. Passed through constructors; NoMetrics drops everything.
#pragma once

#include <cstdint>
#include <string_view>

namespace bulkhead::controller {

// Implementations are thread-safe and cheap (no I/O): every method may be called from any
// thread, gRPC reactions included.
class Metrics {
 public:
  virtual ~Metrics() = default;

  // One operator call finished: its gRPC method's name ("Isolate"), its status
  // code's name ("OK", "FAILED_PRECONDITION") and how long it took, first byte to status.
  virtual void operatorCall(std::string_view method, std::string_view code, double seconds) = 0;
  // An agent's state report was accepted: whether the enforcement succeeded, the agent's own
  // time applying it (the sum of its steps) and the flows it cut.
  virtual void agentApplied(bool ok, double seconds, uint64_t flows_cut) = 0;
  // An agent reported a tamper event (someone changed its table), or the controller recorded
  // one for it (a generation it never issued).
  virtual void tamperEvent(std::string_view host_id) = 0;
};

// Drops every figure: the default where no metrics are served, and in tests.
class NoMetrics final : public Metrics {
 public:
  void operatorCall(std::string_view, std::string_view, double) override {}
  void agentApplied(bool, double, uint64_t) override {}
  void tamperEvent(std::string_view) override {}
};

}  // namespace bulkhead::controller
