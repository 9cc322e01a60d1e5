// A single thread that runs periodic tasks, one-shot timers and posted work, in deadline
// order. Tasks run one at a time on that thread and may block it briefly (a store write), so
// the controller uses separate schedulers for timers and for disk I/O.
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

namespace bulkhead::controller {

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

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Task, std::vector<Task>, std::greater<>> tasks_;   // GUARDED_BY(mu_)
  uint64_t seq_ = 0;
  bool stopping_ = false;
  std::string name_;
  std::thread thread_;
};

}  // namespace bulkhead::controller
