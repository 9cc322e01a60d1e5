// One controller serves a PostgreSQL database at a time: the others wait as standbys and one
// of them takes over when the active one dies. The active controller holds a session-level
// advisory lock (kActiveLock) on a connection of its own; PostgreSQL releases it the moment that
// session ends (the process died, or the server restarted).
//
// Fencing: a standby that takes the lock waits kTakeoverDelay before serving, longer than an
// active controller takes to notice its lock is gone (kCheckInterval) and stop; an active
// controller that cannot confirm its lock for kFenceAfter stops too, before the server drops its
// silent session (TCP keepalives of this session: about 9 s), so two controllers never serve at
// once. A controller that stops for either reason exits; systemd starts it again as a standby.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace bulkhead::controller {

// "bhac" in ASCII: distinct from the write lock (postgres_engine.h).
inline constexpr int64_t kActiveLock = 0x62686163;
inline constexpr std::chrono::milliseconds kCheckInterval{250};
inline constexpr std::chrono::milliseconds kTakeoverDelay{1000};
inline constexpr std::chrono::milliseconds kFenceAfter{5000};

class PostgresActiveLock {
 public:
  // The lock of database `url`; its session is opened by the first tryAcquire().
  explicit PostgresActiveLock(std::string url);
  ~PostgresActiveLock();
  PostgresActiveLock(const PostgresActiveLock&) = delete;
  PostgresActiveLock& operator=(const PostgresActiveLock&) = delete;

  // Takes the lock if no other session holds it: true when this controller is the active one
  // (then or already). Unavailable when the server cannot be reached (a new session is opened
  // at the next call).
  absl::StatusOr<bool> tryAcquire();

  // Whether this controller still holds the lock, confirmed by the server now: true; false
  // when another session holds it (this one's ended and another controller took over);
  // Unavailable when the server cannot be reached. A lost session is opened again and the
  // lock taken again if it is free.
  absl::StatusOr<bool> confirm();

 private:
  struct Session;
  std::string url_;
  std::unique_ptr<Session> session_;
  bool held_ = false;
};

// The active controller's watch: confirm() every kCheckInterval; `stop` is called (once, on the
// watch's thread) with the reason when another controller took over or the lock could not be
// confirmed for kFenceAfter. Runs until the returned object is destroyed.
class ActiveLockWatch {
 public:
  virtual ~ActiveLockWatch() = default;
};
std::unique_ptr<ActiveLockWatch> watchActiveLock(PostgresActiveLock* lock,
                                                 std::function<void(const std::string&)> stop);

// Several controllers serving at once (`--replica`): the same lock, held by one of them, says
// which runs the singletons (TTL releases, fleet-wide blocks, notifications, the CrowdSec
// poller). Every kCheckInterval the lease takes the lock if it is free, or confirms it; it
// leads kTakeoverDelay after taking it (longer than the previous holder takes to notice) and
// stops leading at the first check that does not confirm it (singletons need the database
// anyway). `changed` is called on the lease's thread when leading starts or stops.
class SingletonLease {
 public:
  SingletonLease(PostgresActiveLock* lock, std::function<void(bool leading)> changed);
  ~SingletonLease();
  SingletonLease(const SingletonLease&) = delete;
  SingletonLease& operator=(const SingletonLease&) = delete;
  bool leading() const { return leading_; }

 private:
  void run();
  PostgresActiveLock* lock_;
  std::function<void(bool)> changed_;
  std::atomic<bool> leading_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts after the rest is built
};

}  // namespace bulkhead::controller
