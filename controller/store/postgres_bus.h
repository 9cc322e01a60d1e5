// The link between controllers serving one PostgreSQL database at once (`--replica NAME`):
// LISTEN on a connection of its own, NOTIFY to send. PostgreSQL delivers a notice to every
// session listening on its channel when the sending transaction commits (a store change's
// notice, SqlStore::kDesiredChannel, is sent inside the change's own transaction), in commit
// order, never replayed: what is sent while a controller's session is down is lost to it, so
// `connected` runs after every (re)connect for the controller to catch up.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controller/core/replica_link.h"

namespace bulkhead::controller {

class PostgresBus final : public ReplicaLink {
 public:
  struct Handlers {
    // A notice on one of the channels listened to (this controller's own included). On the
    // bus's thread: it may block (notices wait meanwhile).
    std::function<void(const std::string& channel, const std::string& payload)> notice;
    // After each (re)connect, once listening. On the bus's thread.
    std::function<void()> connected;
  };

  // Listens on `listen` of database `url`; send() sends on `send_channel`. Starts nothing.
  PostgresBus(std::string url, std::vector<std::string> listen, std::string send_channel,
              Handlers handlers);
  ~PostgresBus() override;  // stop()
  PostgresBus(const PostgresBus&) = delete;
  PostgresBus& operator=(const PostgresBus&) = delete;

  // Connects (retrying every 500 ms while the server cannot be reached) on a thread of its own.
  void start();
  // Stops the thread; payloads not yet sent are dropped. Idempotent.
  void stop();
  // ReplicaLink: queued (at most kMaxQueued; beyond it dropped and logged), sent on the bus's
  // thread.
  void send(std::string payload) override;
  static constexpr size_t kMaxQueued = 100000;

 private:
  void run();
  void wake();

  const std::string url_;
  const std::vector<std::string> listen_;
  const std::string send_channel_;
  const Handlers handlers_;
  int wake_fd_ = -1;  // eventfd: send() and stop() wake the thread's poll
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::deque<std::string> queue_;  // GUARDED_BY(mu_)
  size_t dropped_ = 0;             // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace bulkhead::controller
