// The metrics and health listener (--metrics-listen): plain HTTP, meant for a loopback or
// management address (it has no authentication and no TLS). Answers GET only:
//   /metrics  200, the text exposition format 0.0.4 (PrometheusMetrics::scrape)
//   /healthz  200 "ok": the process serves HTTP
//   /readyz   200 "ready" when every readiness check passes, else 503 with one line per
//             failed check ("store: ..."): see readinessAnswer
//   anything else 404; other methods 405.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/parse.h"

namespace httplib {
class Server;
}

namespace bulkhead::controller::metrics {

// One readiness check's result: what was checked ("store", "policies") and how it went.
struct ReadinessCheck {
  std::string name;
  absl::Status status;
};

struct HealthAnswer {
  int http_status = 200;
  std::string body;
};

// 200 "ready" when every check is OK (no checks: ready), else 503 naming each failed check and
// its message, one a line, in the order given. Pure.
HealthAnswer readinessAnswer(const std::vector<ReadinessCheck>& checks);

struct ListenerOptions {
  HostPort listen;                                      // port 0 picks one
  std::function<std::string()> scrape;                  // /metrics
  std::function<std::vector<ReadinessCheck>()> checks;  // /readyz, run at each request
  size_t threads = 2;
};

class Listener {
 public:
  // Binds and serves on a thread of its own. Fails naming --metrics-listen when the address
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<Listener>> start(ListenerOptions options);
  ~Listener();  // stop()
  int port() const { return port_; }
  // Stops accepting and finishes the requests in progress. Idempotent.
  void stop();

 private:
  explicit Listener(ListenerOptions options);
  const ListenerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};  // the thread's listen_after_bind() has returned
  int port_ = 0;
};

}  // namespace bulkhead::controller::metrics
