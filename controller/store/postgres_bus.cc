#include "controller/store/postgres_bus.h"

#include <libpq-fe.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <utility>

#include "common/format.h"
#include "controller/store/postgres_store.h"

namespace bulkhead::controller {

namespace {

constexpr int kRetryMs = 500;
// How long the thread sleeps in poll() with nothing to do.
constexpr int kIdlePollMs = 1000;

struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, ConnCloser>;

std::string lastError(PGconn* c) {
  std::string e = PQerrorMessage(c);
  while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.pop_back();
  return e;
}

// Runs one command; false (logged) when it failed.
bool command(PGconn* c, const char* sql, const std::vector<const char*>& params) {
  PGresult* r = PQexecParams(c, sql, static_cast<int>(params.size()), nullptr, params.data(),
                             nullptr, nullptr, 0);
  const ExecStatusType status = PQresultStatus(r);
  PQclear(r);
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return true;
  spdlog::warn("replicas: {}: {}", sql, lastError(c));
  return false;
}

// Sends the first payloads of `out` (at most kBatchPayloads of them, or about kBatchBytes of
// SQL) as NOTIFYs on `channel` in one round trip, and removes them from `out`: one simple
// query of several statements runs as one transaction, so PostgreSQL delivers them together
// at its commit, in this order. A batch that fails is lost (logged), as one payload was; a
// payload that cannot be quoted (not text in the connection's encoding) is dropped (logged).
bool notifyBatch(PGconn* c, const std::string& channel, std::deque<std::string>& out) {
  constexpr size_t kBatchPayloads = 512;
  constexpr size_t kBatchBytes = size_t{512} * 1024;
  std::string sql;
  size_t batched = 0;
  char* ch = PQescapeLiteral(c, channel.data(), channel.size());
  while (ch != nullptr && !out.empty() && batched < kBatchPayloads && sql.size() < kBatchBytes) {
    const std::string payload = std::move(out.front());
    out.pop_front();
    char* p = PQescapeLiteral(c, payload.data(), payload.size());
    if (p == nullptr) {
      spdlog::warn("replicas: an event that cannot be quoted dropped: {}", lastError(c));
      continue;
    }
    sql += fmt::format("SELECT pg_notify({}, {});", ch, p);
    PQfreemem(p);
    ++batched;
  }
  if (ch == nullptr) {
    spdlog::warn("replicas: {} events lost: cannot quote the channel name: {}", out.size(),
                 lastError(c));
    out.clear();
    return false;
  }
  PQfreemem(ch);
  if (batched == 0) return true;
  PGresult* r = PQexec(c, sql.c_str());
  const ExecStatusType status = PQresultStatus(r);
  PQclear(r);
  if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) return true;
  spdlog::warn("replicas: {} events lost: {}", batched, lastError(c));
  return false;
}

}  // namespace

PostgresBus::PostgresBus(std::string url, std::vector<std::string> listen, std::string send_channel,
                         Handlers handlers)
    : url_(std::move(url)),
      listen_(std::move(listen)),
      send_channel_(std::move(send_channel)),
      handlers_(std::move(handlers)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

PostgresBus::~PostgresBus() {
  stop();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void PostgresBus::start() {
  thread_ = std::thread([this] { run(); });
}

void PostgresBus::stop() {
  stopping_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
}

void PostgresBus::wake() {
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof one);
}

void PostgresBus::send(std::string payload) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= kMaxQueued) {
      if (dropped_++ == 0) spdlog::error("replicas: send queue full, events dropped");
      return;
    }
    queue_.push_back(std::move(payload));
  }
  wake();
}

void PostgresBus::run() {
  Conn conn;
  std::string last_failure;
  while (!stopping_) {
    if (!conn) {
      conn.reset(PQconnectdb(url_.c_str()));
      bool ok = PQstatus(conn.get()) == CONNECTION_OK;
      for (size_t i = 0; ok && i < listen_.size(); ++i) {
        // Channel names are the program's own constants, quoted as identifiers.
        const std::string sql = fmt::format("LISTEN \"{}\"", listen_[i]);
        ok = command(conn.get(), sql.c_str(), {});
      }
      if (!ok) {
        const std::string failure = lastError(conn.get());
        if (failure != last_failure) {
          spdlog::warn("replicas: cannot listen on {}: {} (retrying every {} ms)",
                       redactedUrl(url_), failure, kRetryMs);
          last_failure = failure;
        }
        conn.reset();
        pollfd wake{.fd = wake_fd_, .events = POLLIN, .revents = 0};
        (void)poll(&wake, 1, kRetryMs);
        uint64_t n = 0;
        (void)!read(wake_fd_, &n, sizeof n);
        continue;
      }
      last_failure.clear();
      spdlog::info("replicas: listening on {}", redactedUrl(url_));
      if (handlers_.connected) handlers_.connected();
    }
    std::deque<std::string> out;
    {
      std::lock_guard lock(mu_);
      out.swap(queue_);
      if (dropped_ > 0) {
        spdlog::error("replicas: {} events dropped (send queue full)", dropped_);
        dropped_ = 0;
      }
    }
    bool lost = false;
    while (!out.empty() && !lost) {
      if (!notifyBatch(conn.get(), send_channel_, out)) {
        lost = PQstatus(conn.get()) != CONNECTION_OK;
      }
    }
    if (!lost) {
      pollfd fds[2] = {{.fd = PQsocket(conn.get()), .events = POLLIN, .revents = 0},
                       {.fd = wake_fd_, .events = POLLIN, .revents = 0}};
      bool queued;
      {
        std::lock_guard lock(mu_);
        queued = !queue_.empty();
      }
      if (!queued) (void)poll(fds, 2, kIdlePollMs);
      if (fds[1].revents & POLLIN) {
        uint64_t n = 0;
        (void)!read(wake_fd_, &n, sizeof n);
      }
      if (PQconsumeInput(conn.get()) == 0) lost = true;
    }
    // Notices that came in (also during the sends above).
    while (PGnotify* n = PQnotifies(conn.get())) {
      const std::string channel = n->relname;
      const std::string payload = n->extra;
      PQfreemem(n);
      if (handlers_.notice) handlers_.notice(channel, payload);
    }
    if (lost || PQstatus(conn.get()) != CONNECTION_OK) {
      spdlog::warn("replicas: connection to {} lost: {}", redactedUrl(url_), lastError(conn.get()));
      conn.reset();
    }
  }
}

}  // namespace bulkhead::controller
