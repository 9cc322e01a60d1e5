// A single thread that runs periodic tasks, one-shot timers and posted work, in deadline
// order (posted work in the order posted). Tasks run one at a time on that thread and may
// block it (a store write, a process kill), so the controller and the agent give each kind of
// blocking work a scheduler of its own. A task that throws is logged and dropped.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

namespace bulkhead {

class Scheduler {
 public:
  explicit Scheduler(std::string name);
  ~Scheduler();   // stop()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Each returns false (and drops `fn`) once stop() has begun. Thread-safe.
  // Runs `fn` every `period`, first after one period.
  bool every(std::chrono::milliseconds period, std::function<void()> fn);
  // Runs `fn` once after `delay`.
  bool after(std::chrono::milliseconds delay, std::function<void()> fn);
  // Runs `fn` as soon as the thread is free.
  bool post(std::function<void()> fn) { return after(std::chrono::milliseconds(0), std::move(fn)); }
  // Runs what is already due, then stops the thread; later tasks never run. Idempotent.
  // REQUIRES: not called from a task.
  void stop();
  // True once stop() has begun: a long task may return early, and a task that was due when
  // stop() began (so still runs) may skip its work. Thread-safe.
  bool stopping() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Task {
    Clock::time_point due;
    uint64_t seq;
    std::chrono::milliseconds period;   // 0 = one-shot
    std::function<void()> fn;
    bool operator>(const Task& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };
  bool add(Clock::time_point due, std::chrono::milliseconds period, std::function<void()> fn);
  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Task, std::vector<Task>, std::greater<>> tasks_;   // GUARDED_BY(mu_)
  uint64_t seq_ = 0;
  bool stopping_ = false;
  std::string name_;
  std::thread thread_;
};

}  // namespace bulkhead
