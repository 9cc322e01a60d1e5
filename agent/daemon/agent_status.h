// The agent's local status: what `bulkhead-agent status` prints and what Hello/heartbeats carry.
// Thread-safe; every method takes the board's own lock and calls nothing else.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "bulkhead/v1/containment.pb.h"

namespace bulkhead::agent {

struct AgentStatus {
  std::string host_id;
  std::string controller;                   // ADDR:PORT as configured (several: comma-separated)
  std::vector<std::string> controller_ips;  // every pinned controller's
  bool connected = false;
  std::string controller_target;  // the gRPC target (replica) of the connected stream
  int64_t connected_since_unix_ms = 0;
  int64_t last_disconnect_unix_ms = 0;
  std::string last_connect_error;
  uint64_t connect_count = 0;
  std::string netns_verdict;              // initial | not-initial | unknown
  bool enforcement_allowed = false;
  std::string enforcement_refusal;        // why enforcement is refused, if it is

  // Enforcement (phase 2 fills these).
  uint64_t desired_generation = 0;
  uint64_t enforced_generation = 0;
  std::string ruleset_hash;
  bool isolated = false;
  std::vector<std::string> exemption_sets;
  int64_t isolation_expires_at_unix_ms = 0;
  size_t blocks = 0;
  uint32_t flows_cut_last = 0;
  bool last_apply_ok = true;
  std::string last_apply_error;
  int64_t last_apply_unix_ms = 0;
  bool fail_closed = false;               // a controller-only isolation is in force
  std::deque<bulkhead::v1::TamperEvent> tamper_events;  // newest last, at most kMaxTamperEvents
};

inline constexpr size_t kMaxTamperEvents = 16;

class StatusBoard {
 public:
  template <typename F>
  void update(F&& f) {
    std::lock_guard<std::mutex> lock(mu_);
    f(status_);
  }
  AgentStatus snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  void addTamperEvent(const bulkhead::v1::TamperEvent& e) {
    std::lock_guard<std::mutex> lock(mu_);
    status_.tamper_events.push_back(e);
    while (status_.tamper_events.size() > kMaxTamperEvents) status_.tamper_events.pop_front();
  }

 private:
  mutable std::mutex mu_;
  AgentStatus status_;   // GUARDED_BY(mu_)
};

// One JSON document (pretty, ends with a newline). Times are RFC 3339 UTC and *_unix_ms.
std::string statusToJson(const AgentStatus& s, int64_t now_unix_ms);

}  // namespace bulkhead::agent
