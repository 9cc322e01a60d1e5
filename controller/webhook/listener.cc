#include "controller/webhook/listener.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <nlohmann/json.hpp>

#include "common/format.h"
#include "common/identity.h"
#include "common/text.h"
#include "controller/playbook/playbook.h"
#include "controller/webhook/formats.h"

namespace bulkhead::controller::webhook {
namespace {

namespace v1 = bulkhead::v1;
using nlohmann::json;

Response error(int status, std::string_view message) {
  return Response{status, json{{"error", message}}.dump() + "\n"};
}

// cpp-httplib's task queue, bounded: `threads` workers and at most `max_queued` accepted
// connections waiting for one; beyond that the accepting thread waits, so the kernel's backlog
// (not memory) absorbs a flood.
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(size_t threads, size_t max_queued) : max_queued_(max_queued) {
    for (size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~BoundedPool() override = default;

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mu_);
    room_.wait(lock, [this] { return jobs_.size() < max_queued_ || shutdown_; });
    if (shutdown_) {
      lock.unlock();
      fn();  // still closes its socket
      return;
    }
    jobs_.push_back(std::move(fn));
    ready_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
    }
    ready_.notify_all();
    room_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        ready_.wait(lock, [this] { return !jobs_.empty() || shutdown_; });
        if (jobs_.empty()) return;  // shutting down, nothing left
        fn = std::move(jobs_.front());
        jobs_.pop_front();
        room_.notify_one();
      }
      fn();
    }
  }

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable ready_;
  std::condition_variable room_;
  std::deque<std::function<void()>> jobs_;  // GUARDED_BY(mu_)
  bool shutdown_ = false;                   // GUARDED_BY(mu_)
  std::vector<std::thread> workers_;
};

absl::StatusOr<std::pair<std::string, int>> splitListen(const std::string& listen) {
  std::string host;
  std::string port;
  if (listen.starts_with('[')) {
    size_t close = listen.find("]:");
    if (close == std::string::npos) {
      return absl::InvalidArgumentError("--webhook-listen: expected [ADDR]:PORT");
    }
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    size_t colon = listen.rfind(':');
    if (colon == std::string::npos || listen.find(':') != colon) {
      return absl::InvalidArgumentError("--webhook-listen: expected ADDR:PORT or [ADDR]:PORT");
    }
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  int p = -1;
  if (!port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    p = std::stoi(port);
  }
  if (host.empty() || p < 0 || p > 65535) {
    return absl::InvalidArgumentError(
        fmt::format("--webhook-listen: \"{}\" is not ADDR:PORT", listen));
  }
  return std::make_pair(host, p);
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// The token of "Bearer TOKEN" (scheme case-insensitive), else the URL's; empty if neither.
std::string tokenOf(const Request& r) {
  if (lower(r.authorization.substr(0, 7)) == "bearer ") {
    std::string t = r.authorization.substr(7);
    while (!t.empty() && t.front() == ' ') t.erase(0, 1);
    while (!t.empty() && t.back() == ' ') t.pop_back();
    return t;
  }
  return r.query_token;
}

json actionJson(const v1::SignalAction& a) {
  return {{"playbook", a.playbook()},
          {"action", a.action()},
          {"target", a.target()},
          {"detail", a.detail()},
          {"outcome", a.outcome()}};
}

}  // namespace

bool RateLimiter::allow(const std::string& key) {
  const double capacity = per_minute_;
  const int64_t now = clock_.nowUnixMs();
  std::lock_guard lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(key, Bucket{capacity, now});
  Bucket& b = it->second;
  if (!fresh && now > b.at_unix_ms) {
    b.tokens =
        std::min(capacity, b.tokens + capacity * static_cast<double>(now - b.at_unix_ms) / 60000.0);
    b.at_unix_ms = now;
  }
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

Response Handler::handle(const Request& request) {
  if (request.method != "POST") return error(405, "method: only POST");
  auto integration = directory_.authenticate(request.integration, tokenOf(request));
  if (!integration.ok()) {
    const absl::Status& s = integration.status();
    if (absl::IsNotFound(s) || absl::IsUnauthenticated(s)) {
      directory_.refused(request.integration, request.peer, std::string(s.message()));
      return absl::IsNotFound(s)
                 ? error(404, fmt::format("no integration \"{}\"",
                                          escapeNonPrintable(request.integration.substr(0, 64))))
                 : error(401, "token: missing, wrong or revoked (Authorization: Bearer TOKEN)");
    }
    spdlog::error("webhook: cannot check the token of \"{}\": {}", request.integration, s);
    return error(503, "the controller cannot check tokens now; retry later");
  }
  if (!limiter_.allow(integration->name())) {
    directory_.refused(integration->name(), request.peer, "rate limit");
    return error(429, "rate: too many requests for this integration; retry later");
  }
  const std::string type = lower(request.content_type);
  if (!(type == "application/json" || type.starts_with("application/json;"))) {
    return error(415, "content-type: must be application/json");
  }
  auto format = parseFormat(integration->format());
  absl::StatusOr<FormatConfig> config =
      format.ok() ? parseFormatConfig(*format, integration->config_json()) : format.status();
  if (!config.ok()) {
    spdlog::error("webhook: integration {} has an unusable configuration: {}", integration->name(),
                  config.status());
    return error(503, "this integration's configuration is unusable; see the controller's log");
  }
  auto signals = decode(*config, integration->name(), request.body);
  if (!signals.ok()) return error(400, std::string(signals.status().message()));

  // Every signal is valid: hand them all over, then wait for every answer.
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
    std::vector<absl::StatusOr<SignalOutcome>> outcomes;
  };
  auto wait = std::make_shared<Wait>();
  wait->left = signals->size();
  wait->outcomes.resize(signals->size(), absl::UnknownError("not answered"));
  // The signals belong to the integration's tenant.
  const SignalDelivery from{.delivered_by = "integration:" + integration->name(),
                            .reporting_host = "",
                            .tenant = integration->tenant()};
  for (size_t i = 0; i < signals->size(); ++i) {
    intake_.submit(from, std::move((*signals)[i]),
                   [wait, i](absl::StatusOr<SignalOutcome> outcome) {
                     std::lock_guard lock(wait->mu);
                     wait->outcomes[i] = std::move(outcome);
                     if (--wait->left == 0) wait->cv.notify_all();
                   });
  }
  std::unique_lock lock(wait->mu);
  wait->cv.wait(lock, [&wait] { return wait->left == 0; });
  json out = json::array();
  absl::Status first_error;
  for (const auto& o : wait->outcomes) {
    if (!o.ok()) {
      if (first_error.ok()) first_error = o.status();
      out.push_back({{"error", std::string(o.status().message())}});
      continue;
    }
    json actions = json::array();
    for (const auto& a : o->actions) actions.push_back(actionJson(a));
    out.push_back({{"signal_id", o->signal_id},
                   {"disposition", dispositionText(o->disposition)},
                   {"actions", actions}});
  }
  if (!first_error.ok()) {
    spdlog::error("webhook: {}: a signal was refused: {}", integration->name(), first_error);
    const int status = absl::IsInvalidArgument(first_error) ? 400 : 503;
    return Response{
        status,
        json{{"error", std::string(first_error.message())}, {"signals", out}}.dump() + "\n"};
  }
  return Response{202, json{{"integration", integration->name()},
                            {"tenant", tenantOrDefault(integration->tenant())},
                            {"signals", out}}
                               .dump() +
                           "\n"};
}

Listener::Listener(const Clock& clock, IntegrationDirectory& directory, SignalIntake& intake,
                   ListenerOptions options)
    : options_(std::move(options)),
      limiter_(clock, options_.rate_per_minute),
      handler_(directory, intake, limiter_) {}

absl::StatusOr<std::unique_ptr<Listener>> Listener::start(const Clock& clock,
                                                          IntegrationDirectory& directory,
                                                          SignalIntake& intake,
                                                          ListenerOptions options) {
  auto address = splitListen(options.listen);
  if (!address.ok()) return address.status();
  if (options.rate_per_minute == 0) {
    return absl::InvalidArgumentError("--webhook-rate: must be at least 1 a minute");
  }
  std::unique_ptr<Listener> l(new Listener(clock, directory, intake, std::move(options)));
  l->server_ = std::make_unique<httplib::SSLServer>(l->options_.cert_file.c_str(),
                                                    l->options_.key_file.c_str());
  if (!l->server_->is_valid()) {
    return absl::InvalidArgumentError(
        fmt::format("--webhook-cert/--webhook-key: cannot use {} and {} (PEM certificate and "
                    "its private key expected)",
                    l->options_.cert_file, l->options_.key_file));
  }
  SSL_CTX_set_min_proto_version(l->server_->ssl_context(), TLS1_2_VERSION);
  httplib::SSLServer& server = *l->server_;
  const size_t threads = std::max<size_t>(1, l->options_.threads);
  server.new_task_queue = [threads] { return new BoundedPool(threads, 4 * threads); };
  server.set_payload_max_length(l->options_.body_limit);
  server.set_read_timeout(l->options_.io_timeout);
  server.set_write_timeout(l->options_.io_timeout);
  server.set_keep_alive_max_count(100);
  server.set_keep_alive_timeout(5);
  Handler* handler = &l->handler_;
  server.Post(R"(/v1/signals/([^/]+))",
              [handler](const httplib::Request& req, httplib::Response& res) {
                Request r{.method = req.method,
                          .integration = req.matches[1],
                          .authorization = req.get_header_value("Authorization"),
                          .query_token = req.get_param_value("token"),
                          .content_type = req.get_header_value("Content-Type"),
                          .body = req.body,
                          .peer = fmt::format("{}:{}", req.remote_addr, req.remote_port)};
                Response out = handler->handle(r);
                res.status = out.status;
                if (out.status == 401) res.set_header("WWW-Authenticate", "Bearer");
                if (out.status == 429) res.set_header("Retry-After", "60");
                res.set_content(out.body, "application/json");
              });
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = "not found: POST /v1/signals/NAME";
    if (res.status == 413) message = "body: larger than the limit (--webhook-body-limit)";
    if (res.status == 405) message = "method: only POST";
    if (res.status == 400) message = "request: malformed HTTP";
    res.set_content(json{{"error", message}}.dump() + "\n", "application/json");
  });
  // SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, with which a second process
  // (a second controller started by mistake) binds the same port and takes a share of the
  // alerts instead of failing.
  server.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  const auto& [host, port] = *address;
  if (port == 0) {
    l->port_ = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, port)) {
    l->port_ = port;
  }
  if (l->port_ <= 0) {
    return absl::UnavailableError(
        fmt::format("--webhook-listen: cannot listen on {} (address in use or not local?)",
                    l->options_.listen));
  }
  l->thread_ = std::thread([&server, returned = &l->listen_returned_] {
    server.listen_after_bind();
    *returned = true;
  });
  spdlog::info("webhook listener on {} (port {})", l->options_.listen, l->port_);
  return l;
}

Listener::~Listener() { stop(); }

void Listener::stop() {
  // cpp-httplib's stop() is lost when it comes before listen_after_bind() runs its loop
  // (is_running() still false), and the join would wait for ever: wait for the loop to run,
  // or for the thread to have ended.
  while (server_ && thread_.joinable() && !server_->is_running() && !listen_returned_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace bulkhead::controller::webhook
