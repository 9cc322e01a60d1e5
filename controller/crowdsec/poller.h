// The CrowdSec bouncer: polls one CrowdSec local API's decision stream and hands each decision
// to the controller's SignalIntake as a signal (the playbooks decide what it causes; the default
// one, policies/playbooks/crowdsec.yaml, blocks fleet-wide for the decision's duration and
// unblocks when it is deleted).
//
// Exactly one poller per API key: CrowdSec keeps one "last pull" cursor per key, so two
// pollers sharing a key each see part of the changes. A controller runs at most one poller;
// two controllers must not share a key.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "common/scheduler.h"
#include "controller/crowdsec/decisions.h"
#include "controller/service/signal_intake.h"

namespace bulkhead::controller::crowdsec {

// One HTTP exchange with the local API. `status` 0: no answer (unreachable, timeout, TLS
// failure, body over the size limit): `error` says why, and `answered` tells whether the
// request may have reached the server (CrowdSec may then have moved its cursor).
struct FetchResult {
  int status = 0;
  std::string body;
  std::string error;
  bool answered = false;
};
// GET /v1/decisions/stream, with ?startup=true when `startup`. Blocking; called on the
// poller's thread only.
using Fetch = std::function<FetchResult(bool startup)>;

struct PollerOptions {
  std::chrono::milliseconds interval{1000};      // between polls while all is well
  // Whether this controller polls now (several controllers on one database: the one holding
  // the singleton lock). Null: always.
  std::function<bool()> runs;
  std::chrono::milliseconds max_backoff{10000};  // the interval doubles up to this on failures
  // How long a submitted decision's key is remembered, so a decision listed again (the LAPI's
  // deleted list overlaps by 2 s; a resync lists everything) is not submitted twice.
  std::chrono::milliseconds remember{std::chrono::minutes(30)};
  // A startup answer also lists every decision that ended and is still in CrowdSec's database
  // (kept up to 7 days). Those that ended within this window become resolved signals (one may
  // have been deleted while the controller was down, its block still running); older ones are
  // skipped: their blocks, which last as long as the decision, have expired.
  std::chrono::milliseconds startup_deleted_max_age{std::chrono::hours(24)};
};

// The LAPI at `url` ("http://127.0.0.1:8080", "https://lapi.example:8080"; a path prefix is
// kept, and a query is sent with every poll: the stream's filters, e.g.
// "?origins=crowdsec,cscli" to leave out the community blocklist), with header X-Api-Key:
// `api_key`; https verifies the server against `ca_file` (empty: the system's CAs). Answers larger
// than `max_body_bytes` are refused. INVALID_ARGUMENT for a URL that is not
// http(s)://HOST[:PORT][/PATH][?FILTERS].
struct HttpOptions {
  std::string url;
  std::string api_key;
  std::string ca_file;
  size_t max_body_bytes = size_t{64} << 20;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds read_timeout{10000};
};
absl::StatusOr<Fetch> httpFetch(const HttpOptions& options);
// "HOST:PORT" of a LAPI URL (for delivered_by "crowdsec:HOST:PORT"), or the error.
absl::StatusOr<std::string> hostPortOf(const std::string& url);

// Counters since start (for tests and the log).
struct PollerStats {
  uint64_t polls = 0;         // answers used
  uint64_t failures = 0;      // polls that failed (no answer, HTTP error, malformed)
  uint64_t startups = 0;      // startup=true polls answered
  uint64_t submitted = 0;     // signals handed to the intake
  uint64_t refused = 0;       // signals the intake refused (kept to retry while UNAVAILABLE)
  uint64_t repeated = 0;      // decisions listed again and not resubmitted
  uint64_t still_active = 0;  // deletions not submitted: another decision holds the address
  // by skipName() (scope, type, simulated, bad value) and "ended long ago"
  std::map<std::string, uint64_t> skipped;
};

class Poller {
 public:
  // `delivered_by` names the front door in the audit trail ("crowdsec:HOST:PORT").
  Poller(SignalIntake& intake, std::string delivered_by, Fetch fetch, PollerOptions options);
  ~Poller();  // stop()
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  // Starts the "bh-crowdsec" thread: the first poll at once with startup=true, then one every
  // interval (backing off to max_backoff while polls fail). Errors are logged once per change
  // of state ("LAPI unreachable", "HTTP 403", "malformed answer", then "polling again").
  void start();
  // Ends the thread; waits for an exchange in progress (bounded by the HTTP timeouts).
  // Idempotent.
  void stop();

  // One poll on the caller's thread (what the thread does each interval); true when the answer
  // was used. For tests: not while the thread runs.
  bool pollOnce();

  PollerStats stats() const;

 private:
  // One poll on the thread, then the next one scheduled (after interval, or the backoff).
  void tick();
  void use(const StreamAnswer& answer, bool startup, const std::string& sha256);
  void submit(bulkhead::v1::Signal signal);
  void failed(const std::string& state, bool resync);
  void forgetOld();

  SignalIntake& intake_;
  const std::string delivered_by_;
  Fetch fetch_;
  const PollerOptions options_;

  // Poll state: used by the polling thread (or pollOnce) only.
  bool startup_ = true;  // the next poll asks for startup=true
  std::string state_;    // the last logged state ("ok", "HTTP 403", ...)
  int consecutive_failures_ = 0;
  // Active mirrored decisions by id, and how many hold each cidr: a deletion unblocks only
  // when no other active decision holds the same address.
  std::unordered_map<int64_t, Decision> active_;
  std::map<std::string, int> holders_;
  // Keys submitted recently (key -> when), so a listed-again decision is not resubmitted.
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> sent_;

  // Signals the intake refused as UNAVAILABLE (retried next poll); shared with the callbacks.
  struct Shared {
    std::mutex mu;
    std::vector<bulkhead::v1::Signal> retry;
    PollerStats stats;
  };
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();

  std::mutex mu_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  // Set once by start() (under mu_), then unchanged until destruction. Last: destroyed first.
  std::unique_ptr<Scheduler> thread_;
};

}  // namespace bulkhead::controller::crowdsec
