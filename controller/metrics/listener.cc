#include "controller/metrics/listener.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/format.h"

namespace bulkhead::controller::metrics {

HealthAnswer readinessAnswer(const std::vector<ReadinessCheck>& checks) {
  HealthAnswer out;
  for (const ReadinessCheck& c : checks) {
    if (c.status.ok()) continue;
    out.http_status = 503;
    out.body += fmt::format("{}: {}\n", c.name, c.status.message());
  }
  if (out.http_status == 200) out.body = "ready\n";
  return out;
}

Listener::Listener(ListenerOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Listener>> Listener::start(ListenerOptions options) {
  std::unique_ptr<Listener> l(new Listener(std::move(options)));
  l->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *l->server_;
  const size_t threads = std::max<size_t>(1, l->options_.threads);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // SO_REUSEADDR only: cpp-httplib's default sets SO_REUSEPORT, with which a second process
  // binds the same port and takes half the scrapes instead of failing.
  server.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_read_timeout(10, 0);
  server.set_write_timeout(10, 0);
  const ListenerOptions* o = &l->options_;
  server.Get("/metrics", [o](const httplib::Request&, httplib::Response& res) {
    res.set_content(o->scrape ? o->scrape() : std::string(),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain; charset=utf-8");
  });
  server.Get("/readyz", [o](const httplib::Request&, httplib::Response& res) {
    const HealthAnswer a = readinessAnswer(o->checks ? o->checks() : std::vector<ReadinessCheck>{});
    res.status = a.http_status;
    res.set_content(a.body, "text/plain; charset=utf-8");
  });
  // Any other method on a known path: 405; unknown paths: 404 (cpp-httplib's default).
  auto not_allowed = [](const httplib::Request&, httplib::Response& res) {
    res.status = 405;
    res.set_content("only GET\n", "text/plain; charset=utf-8");
  };
  for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
    server.Post(path, not_allowed);
    server.Put(path, not_allowed);
    server.Delete(path, not_allowed);
    server.Patch(path, not_allowed);
  }
  const std::string& host = l->options_.listen.host;
  const int port = l->options_.listen.port;
  if (port == 0) {
    l->port_ = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, port)) {
    l->port_ = port;
  }
  if (l->port_ <= 0) {
    return absl::UnavailableError(fmt::format(
        "--metrics-listen: cannot listen on {}:{} (address in use or not local?)", host, port));
  }
  l->thread_ = std::thread([&server, returned = &l->listen_returned_] {
    server.listen_after_bind();
    *returned = true;
  });
  // stop() before the accept loop runs would be lost (cpp-httplib ignores it) and the join
  // would wait forever: return once it runs.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server.is_running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::InternalError("--metrics-listen: the listener thread did not start");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  spdlog::info("metrics and health (plain HTTP) on {}:{}", host, l->port_);
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

}  // namespace bulkhead::controller::metrics
