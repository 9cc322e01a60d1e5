// The controller's HTTPS webhook listener: `POST /v1/signals/NAME` with integration NAME's
// bearer token (`Authorization: Bearer TOKEN`; senders that cannot set headers, such as
// Splunk, may put it in the URL as `?token=TOKEN`), a JSON body in the integration's format
// (formats.h). Served by cpp-httplib's SSLServer on its own address and certificate, apart
// from the gRPC port.
//
// Each request is answered:
//   202 {"signals":[{"signal_id","disposition","actions"}...]}: every signal of the body was
//       taken by the SignalIntake (recorded and decided);
//   400 one line naming the malformed field: nothing was submitted (all-or-nothing);
//   401 missing, wrong or revoked token; 404 unknown integration; 405 not POST;
//   413 body over the limit; 415 not application/json; 429 over the integration's rate;
//   503 the controller is shutting down or its store failed.
// Refused requests (401, 404, 429) are reported to the IntegrationDirectory, which audits them
// in a bounded way.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "controller/core/clock.h"
#include "controller/service/integrations.h"
#include "controller/service/signal_intake.h"

namespace httplib {
class SSLServer;
}

namespace bulkhead::controller::webhook {

struct ListenerOptions {
  std::string listen;     // "ADDR:PORT" or "[V6]:PORT"; port 0 picks one
  std::string cert_file;  // PEM certificate chain
  std::string key_file;   // PEM private key
  size_t body_limit = 1 << 20;
  // Requests per minute per integration (a token bucket holding a minute's worth).
  uint32_t rate_per_minute = 120;
  size_t threads = 8;  // handler threads; further connections wait in a bounded queue
  std::chrono::seconds io_timeout{10};
};

// Per-integration token buckets. Thread-safe.
class RateLimiter {
 public:
  RateLimiter(const Clock& clock, uint32_t per_minute) : clock_(clock), per_minute_(per_minute) {}
  // Takes one request from `key`'s bucket; false when it is empty.
  bool allow(const std::string& key);

 private:
  struct Bucket {
    double tokens = 0;
    int64_t at_unix_ms = 0;
  };
  const Clock& clock_;
  const uint32_t per_minute_;
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;  // GUARDED_BY(mu_); one per authenticated integration
};

// One request as the handler sees it (the HTTP layer's parts it reads), and its answer.
struct Request {
  std::string method;
  std::string integration;  // NAME from the path
  std::string authorization;
  std::string query_token;
  std::string content_type;
  std::string body;
  std::string peer;  // "ADDR:PORT", for the log and the audit trail
};
struct Response {
  int status = 500;
  std::string body;  // JSON: {"signals":[...]} or {"error":"..."}
};

// What the listener does with a request, apart from HTTP: authenticate, rate-limit, decode,
// submit. Thread-safe; blocks until the intake answered every signal.
class Handler {
 public:
  Handler(IntegrationDirectory& directory, SignalIntake& intake, RateLimiter& limiter)
      : directory_(directory), intake_(intake), limiter_(limiter) {}
  Response handle(const Request& request);

 private:
  IntegrationDirectory& directory_;
  SignalIntake& intake_;
  RateLimiter& limiter_;
};

class Listener {
 public:
  // Loads the certificate and key, binds and starts serving on a thread of its own. Fails
  // naming the flag when the address cannot be bound or the files cannot be used.
  static absl::StatusOr<std::unique_ptr<Listener>> start(const Clock& clock,
                                                         IntegrationDirectory& directory,
                                                         SignalIntake& intake,
                                                         ListenerOptions options);
  ~Listener();  // stop()
  int port() const { return port_; }
  // Stops accepting, finishes the requests in progress. Idempotent.
  void stop();

 private:
  Listener(const Clock& clock, IntegrationDirectory& directory, SignalIntake& intake,
           ListenerOptions options);

  const ListenerOptions options_;
  RateLimiter limiter_;
  Handler handler_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};  // the thread's listen_after_bind() has returned
  int port_ = 0;
};

}  // namespace bulkhead::controller::webhook
