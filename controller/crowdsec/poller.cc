#include "controller/crowdsec/poller.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "common/format.h"
#include "common/parse.h"
#include "evidence/hash.h"

namespace bulkhead::controller::crowdsec {
namespace {

namespace v1 = bulkhead::v1;
using std::chrono::milliseconds;

constexpr char kStreamPath[] = "/v1/decisions/stream";
constexpr size_t kMaxRemembered = 200000;

struct Url {
  std::string scheme;  // http or https
  std::string host;    // without brackets
  int port = 0;
  std::string path;   // prefix, without a trailing slash
  std::string query;  // the stream's filters ("origins=crowdsec,cscli"), without the "?"
};

absl::StatusOr<Url> parseUrl(const std::string& url) {
  auto invalid = [&](const std::string& why) {
    return absl::InvalidArgumentError(fmt::format(
        "invalid LAPI URL \"{}\": {} (expected http(s)://HOST[:PORT][/PATH][?FILTERS])", url, why));
  };
  Url out;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    out.scheme = "http";
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    out.scheme = "https";
    rest = url.substr(8);
  } else {
    return invalid("the scheme must be http or https");
  }
  if (rest.find('#') != std::string::npos) return invalid("no fragment");
  if (const size_t q = rest.find('?'); q != std::string::npos) {
    out.query = rest.substr(q + 1);
    rest.resize(q);
    if (out.query.find("startup") != std::string::npos) return invalid("startup is the poller's");
  }
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  out.path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!out.path.empty() && out.path.back() == '/') out.path.pop_back();
  if (authority.find('@') != std::string::npos) return invalid("no user information");
  std::string port_text;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) return invalid("unclosed [");
    out.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return invalid("junk after ]");
      port_text = authority.substr(close + 2);
    }
  } else {
    const size_t colon = authority.rfind(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos) port_text = authority.substr(colon + 1);
  }
  if (out.host.empty()) return invalid("no host");
  if (port_text.empty()) {
    out.port = out.scheme == "https" ? 443 : 80;
  } else {
    auto port = parsePort("port", port_text);
    if (!port.ok()) return invalid(std::string(port.status().message()));
    out.port = *port;
  }
  return out;
}

std::string hostPort(const Url& u) {
  return u.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", u.host, u.port)
                                               : fmt::format("{}:{}", u.host, u.port);
}

}  // namespace

absl::StatusOr<std::string> hostPortOf(const std::string& url) {
  auto u = parseUrl(url);
  if (!u.ok()) return u.status();
  return hostPort(*u);
}

absl::StatusOr<Fetch> httpFetch(const HttpOptions& options) {
  auto url = parseUrl(options.url);
  if (!url.ok()) return url.status();
  if (options.api_key.empty()) return absl::InvalidArgumentError("empty API key");
  if (!options.ca_file.empty() && url->scheme != "https") {
    return absl::InvalidArgumentError("a CA file is only used with an https:// LAPI URL");
  }
  // One client, kept alive across polls (used on the poller's thread only).
  auto client =
      std::make_shared<httplib::Client>(fmt::format("{}://{}", url->scheme, hostPort(*url)));
  client->set_keep_alive(true);
  client->set_follow_location(false);
  client->set_connection_timeout(
      std::chrono::duration_cast<std::chrono::microseconds>(options.connect_timeout));
  client->set_read_timeout(
      std::chrono::duration_cast<std::chrono::microseconds>(options.read_timeout));
  client->set_write_timeout(
      std::chrono::duration_cast<std::chrono::microseconds>(options.read_timeout));
  if (url->scheme == "https") {
    client->enable_server_certificate_verification(true);
    if (!options.ca_file.empty()) client->set_ca_cert_path(options.ca_file.c_str());
  }
  const httplib::Headers headers{{"X-Api-Key", options.api_key},
                                 {"User-Agent", "bulkhead-controller"}};
  const std::string path = url->path + kStreamPath;
  const std::string query = url->query;
  const size_t limit = options.max_body_bytes;
  return Fetch([client, headers, path, query, limit](bool startup) {
    FetchResult out;
    bool too_big = false;
    int status = 0;
    auto result = client->Get(
        path + (query.empty() ? (startup ? "?startup=true" : "")
                              : "?" + query + (startup ? "&startup=true" : "")),
        headers,
        [&](const httplib::Response& r) {
          status = r.status;
          return true;
        },
        [&](const char* data, size_t n) {
          if (out.body.size() + n > limit) {
            too_big = true;
            return false;
          }
          out.body.append(data, n);
          return true;
        });
    if (too_big) {
      out.answered = true;
      out.error = fmt::format("answer larger than {} bytes", limit);
      out.body.clear();
      return out;
    }
    if (!result) {
      // A read error after the status line: CrowdSec answered (and moved its cursor).
      out.answered = status != 0;
      out.error = httplib::to_string(result.error());
      out.body.clear();
      return out;
    }
    out.status = result->status;
    out.answered = true;
    return out;
  });
}

Poller::Poller(SignalIntake& intake, std::string delivered_by, Fetch fetch, PollerOptions options)
    : intake_(intake),
      delivered_by_(std::move(delivered_by)),
      fetch_(std::move(fetch)),
      options_(options) {}

Poller::~Poller() { stop(); }

void Poller::start() {
  std::lock_guard lock(mu_);
  if (thread_ || stopping_) return;
  thread_ = std::make_unique<Scheduler>("bh-crowdsec");
  thread_->post([this] { tick(); });
}

void Poller::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  // stopping_ set: start() no longer changes thread_.
  if (thread_) thread_->stop();
}

PollerStats Poller::stats() const {
  std::lock_guard lock(shared_->mu);
  return shared_->stats;
}

void Poller::tick() {
  if (thread_->stopping()) return;  // due when stop() began: no new exchange
  if (options_.runs && !options_.runs()) {
    thread_->after(options_.interval, [this] { tick(); });
    return;
  }
  const bool ok = pollOnce();
  milliseconds wait = options_.interval;
  if (!ok) {
    // interval, 2x, 4x, ... up to max_backoff
    for (int i = 1; i < consecutive_failures_ && wait < options_.max_backoff; ++i) wait *= 2;
    wait = std::min(wait, std::max(options_.max_backoff, options_.interval));
  }
  thread_->after(wait, [this] { tick(); });  // refused once stop() has begun
}

void Poller::failed(const std::string& state, bool resync) {
  ++consecutive_failures_;
  {
    std::lock_guard lock(shared_->mu);
    ++shared_->stats.failures;
  }
  if (resync && !startup_) {
    // CrowdSec moved its cursor for an answer we could not use: ask for everything again.
    startup_ = true;
  }
  if (state != state_) {
    spdlog::warn("crowdsec {}: {}; polling again every {} ms at most{}", delivered_by_, state,
                 std::max(options_.max_backoff, options_.interval).count(),
                 resync ? ", starting over with startup=true" : "");
    state_ = state;
  }
}

bool Poller::pollOnce() {
  // Signals the intake could not record last time go first.
  std::vector<v1::Signal> retry;
  {
    std::lock_guard lock(shared_->mu);
    retry.swap(shared_->retry);
  }
  for (v1::Signal& s : retry) submit(std::move(s));

  const bool startup = startup_;
  FetchResult r = fetch_(startup);
  if (r.status == 0) {
    failed(r.answered ? "answer lost: " + r.error : "LAPI unreachable: " + r.error, r.answered);
    return false;
  }
  if (r.status != 200) {
    std::string why = r.status == 403 ? "HTTP 403: the API key is refused (cscli bouncers list)"
                                      : fmt::format("HTTP {}", r.status);
    failed(why, false);
    return false;
  }
  auto answer = parseStreamAnswer(r.body);
  if (!answer.ok()) {
    failed(fmt::format("malformed answer: {}", answer.status().message()), true);
    return false;
  }
  const std::string sha = evidence::sha256Hex(r.body);
  use(*answer, startup, sha);
  startup_ = false;
  consecutive_failures_ = 0;
  const std::string state = "ok";
  if (state_ != state) {
    if (state_.empty()) {
      spdlog::info("crowdsec {}: polling (startup: {} active, {} deleted decisions)", delivered_by_,
                   answer->added.size(), answer->deleted.size());
    } else {
      spdlog::info("crowdsec {}: polling again{}", delivered_by_,
                   startup ? " (resynchronised with startup=true)" : "");
    }
    state_ = state;
  }
  std::lock_guard lock(shared_->mu);
  ++shared_->stats.polls;
  if (startup) ++shared_->stats.startups;
  return true;
}

void Poller::use(const StreamAnswer& answer, bool startup, const std::string& sha256) {
  forgetOld();
  const auto now = std::chrono::steady_clock::now();
  auto skip = [&](const Decision& d, Skip why) {
    spdlog::debug("crowdsec: decision {} ({} {} {}) not mirrored: {}", d.id, d.scope, d.value,
                  d.type, skipName(why));
    std::lock_guard lock(shared_->mu);
    ++shared_->stats.skipped[skipName(why)];
  };
  auto firstTime = [&](const std::string& key) {
    auto [it, inserted] = sent_.emplace(key, now);
    if (!inserted) {
      std::lock_guard lock(shared_->mu);
      ++shared_->stats.repeated;
    }
    return inserted;
  };
  auto release = [&](int64_t id) {
    auto it = active_.find(id);
    if (it == active_.end()) return;
    const std::string cidr = blockedCidr(it->second);
    if (--holders_[cidr] <= 0) holders_.erase(cidr);
    active_.erase(it);
  };

  // A startup answer lists every active decision: it replaces what we knew. Decisions we held
  // that it neither lists nor deletes ended while we were not looking: they are deleted too.
  std::vector<Decision> vanished;
  if (startup) {
    std::set<int64_t> listed;
    for (const Decision& d : answer.added) listed.insert(d.id);
    for (const Decision& d : answer.deleted) listed.insert(d.id);
    for (const auto& [id, d] : active_) {
      if (!listed.count(id)) vanished.push_back(d);
    }
    active_.clear();
    holders_.clear();
  }

  // New decisions first, so a deletion in the same answer sees every address still held.
  for (const Decision& d : answer.added) {
    Conversion c = toSignal(d, /*resolved=*/false, sha256);
    if (!c.signal) {
      skip(d, c.skipped);
      continue;
    }
    if (active_.emplace(d.id, d).second) ++holders_[c.signal->addresses(0)];
    if (firstTime(c.signal->idempotency_key())) submit(*std::move(c.signal));
  }
  auto resolve = [&](const Decision& d, v1::Signal signal) {
    release(d.id);
    if (holders_.count(signal.addresses(0))) {
      // Another active decision still bans this address: the block stays.
      spdlog::debug("crowdsec: decision {} on {} deleted; another decision still holds it", d.id,
                    d.value);
      std::lock_guard lock(shared_->mu);
      ++shared_->stats.still_active;
      return;
    }
    if (firstTime(signal.idempotency_key())) submit(std::move(signal));
  };
  for (const Decision& d : answer.deleted) {
    if (startup && -d.duration_ms > options_.startup_deleted_max_age.count()) {
      // Ended long before: its block (same duration) is long gone; not worth a signal.
      std::lock_guard lock(shared_->mu);
      ++shared_->stats.skipped["ended long ago"];
      continue;
    }
    Conversion c = toSignal(d, /*resolved=*/true, sha256);
    if (!c.signal) {
      skip(d, c.skipped);
      continue;
    }
    resolve(d, *std::move(c.signal));
  }
  for (const Decision& d : vanished) {
    Conversion c = toSignal(d, /*resolved=*/true, sha256);
    if (c.signal) resolve(d, *std::move(c.signal));
  }
}

void Poller::submit(v1::Signal signal) {
  {
    std::lock_guard lock(shared_->mu);
    ++shared_->stats.submitted;
  }
  std::weak_ptr<Shared> weak = shared_;
  v1::Signal copy = signal;
  intake_.submit(
      SignalDelivery{.delivered_by = delivered_by_}, std::move(signal),
      [weak, copy = std::move(copy)](const absl::StatusOr<SignalOutcome>& outcome) mutable {
        if (outcome.ok()) return;
        spdlog::warn("crowdsec: {} {} not taken: {}", copy.idempotency_key(),
                     copy.addresses_size() ? copy.addresses(0) : "", outcome.status());
        auto shared = weak.lock();
        if (!shared) return;
        std::lock_guard lock(shared->mu);
        ++shared->stats.refused;
        if (absl::IsUnavailable(outcome.status()) && shared->retry.size() < 100000) {
          shared->retry.push_back(std::move(copy));
        }
      });
}

void Poller::forgetOld() {
  const auto now = std::chrono::steady_clock::now();
  if (sent_.size() < kMaxRemembered) {
    for (auto it = sent_.begin(); it != sent_.end();) {
      it = now - it->second > options_.remember ? sent_.erase(it) : std::next(it);
    }
  } else {
    sent_.clear();  // a flood: the service's own deduplication still acts once per key
  }
}

}  // namespace bulkhead::controller::crowdsec
