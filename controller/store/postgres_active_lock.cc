#include "controller/store/postgres_active_lock.h"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "common/format.h"
#include "controller/store/postgres_engine.h"
#include "controller/store/postgres_store.h"

namespace bulkhead::controller {

using postgres::trimmed;

// The lock's own session, on libpq directly: one connection, one query at a time.
struct PostgresActiveLock::Session {
  PGconn* conn = nullptr;
  ~Session() { PQfinish(conn); }
  // Opens the session; the server's words when it cannot.
  static absl::StatusOr<std::unique_ptr<Session>> open(const std::string& url) {
    auto s = std::make_unique<Session>();
    s->conn = PQconnectdb(url.c_str());
    if (PQstatus(s->conn) != CONNECTION_OK) {
      return absl::UnavailableError(trimmed(PQerrorMessage(s->conn)));
    }
    return s;
  }
  // Runs `sql`; the first column of its last row as a boolean ("t"), false without rows.
  absl::StatusOr<bool> query(const std::string& sql) {
    PGresult* r = PQexec(conn, sql.c_str());
    const ExecStatusType status = PQresultStatus(r);
    absl::StatusOr<bool> out = false;
    if (status == PGRES_TUPLES_OK && PQntuples(r) > 0) {
      out = std::string_view(PQgetvalue(r, PQntuples(r) - 1, 0)) == "t";
    } else if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      out = absl::UnavailableError(trimmed(PQerrorMessage(conn)));
    }
    PQclear(r);
    return out;
  }
};

PostgresActiveLock::PostgresActiveLock(std::string url) : url_(std::move(url)) {}
PostgresActiveLock::~PostgresActiveLock() = default;

absl::StatusOr<bool> PostgresActiveLock::tryAcquire() {
  if (held_) return true;
  // A session kept from an earlier try may have died since (a server restart): it is opened
  // again and the try repeated, once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool fresh = !session_;
    if (fresh) {
      auto opened = Session::open(url_);
      if (!opened.ok()) {
        return absl::UnavailableError(
            fmt::format("PostgreSQL {}: {}", redactedUrl(url_), opened.status().message()));
      }
      session_ = *std::move(opened);
    }
    // The server drops this session ~9 s after its peer went silent (a partition over TCP),
    // freeing the lock; the active controller fences itself first (kFenceAfter).
    auto taken =
        session_->query(fmt::format("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; "
                                    "SET tcp_keepalives_count = 2; SELECT pg_try_advisory_lock({})",
                                    kActiveLock));
    if (taken.ok()) {
      held_ = *taken;
      return held_;
    }
    session_.reset();
    if (fresh) {
      return absl::UnavailableError(
          fmt::format("PostgreSQL {}: {}", redactedUrl(url_), taken.status().message()));
    }
  }
  return absl::UnavailableError(fmt::format("PostgreSQL {}: no session", redactedUrl(url_)));
}

absl::StatusOr<bool> PostgresActiveLock::confirm() {
  if (session_ && held_) {
    // The lock is this session's while the session lives: one round trip proves both.
    auto held = session_->query(fmt::format(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = {} AND "
        "pid = pg_backend_pid() AND granted)",
        kActiveLock));
    if (held.ok()) return held;
    session_.reset();  // the session is gone, and the lock with it: take it again if free
    held_ = false;
  }
  return tryAcquire();
}

namespace {

class Watch final : public ActiveLockWatch {
 public:
  Watch(PostgresActiveLock* lock, std::function<void(const std::string&)> stop)
      : lock_(lock), stop_(std::move(stop)), thread_([this] { run(); }) {}
  ~Watch() override {
    {
      std::lock_guard l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void run() {
    auto confirmed = std::chrono::steady_clock::now();
    std::unique_lock l(mu_);
    while (!cv_.wait_for(l, kCheckInterval, [this] { return done_; })) {
      l.unlock();
      auto held = lock_->confirm();
      const auto now = std::chrono::steady_clock::now();
      std::string reason;
      if (held.ok() && *held) {
        if (now - confirmed > 2 * kCheckInterval) {
          spdlog::warn(
              "active lock confirmed again after {} ms without the database",
              std::chrono::duration_cast<std::chrono::milliseconds>(now - confirmed).count());
        }
        confirmed = now;
      } else if (held.ok()) {
        reason = "another controller holds the active lock: it took over this database";
      } else if (now - confirmed >= kFenceAfter) {
        reason = fmt::format(
            "the active lock could not be confirmed for {} ms ({}): stopping "
            "before a standby may take over",
            std::chrono::duration_cast<std::chrono::milliseconds>(now - confirmed).count(),
            held.status().message());
      }
      if (!reason.empty()) {
        stop_(reason);
        return;
      }
      l.lock();
    }
  }

  PostgresActiveLock* lock_;
  std::function<void(const std::string&)> stop_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts after the rest is built
};

}  // namespace

SingletonLease::SingletonLease(PostgresActiveLock* lock, std::function<void(bool)> changed)
    : lock_(lock), changed_(std::move(changed)), thread_([this] { run(); }) {}

SingletonLease::~SingletonLease() {
  {
    std::lock_guard l(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SingletonLease::run() {
  std::optional<std::chrono::steady_clock::time_point> taken;
  std::unique_lock l(mu_);
  do {
    l.unlock();
    auto held = taken ? lock_->confirm() : lock_->tryAcquire();
    const auto now = std::chrono::steady_clock::now();
    if (held.ok() && *held) {
      if (!taken) taken = now;
      if (!leading_ && now - *taken >= kTakeoverDelay) {
        leading_ = true;
        changed_(true);
      }
    } else {
      taken.reset();
      if (leading_) {
        leading_ = false;
        changed_(false);
      }
    }
    l.lock();
  } while (!cv_.wait_for(l, kCheckInterval, [this] { return done_; }));
}

std::unique_ptr<ActiveLockWatch> watchActiveLock(PostgresActiveLock* lock,
                                                 std::function<void(const std::string&)> stop) {
  return std::make_unique<Watch>(lock, std::move(stop));
}

}  // namespace bulkhead::controller
