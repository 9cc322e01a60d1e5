// One thread running delayed callbacks: reconnect backoff and heartbeats for any number of
// controller sessions (the load generator holds 10,000 sessions on one TimerQueue).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace bulkhead::agent {

class TimerQueue {
 public:
  using Id = uint64_t;
  using Clock = std::chrono::steady_clock;

  TimerQueue();
  // Drops pending callbacks and joins the thread.
  ~TimerQueue();

  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Runs `fn` on the timer thread after `delay`. Callbacks must not block for long.
  Id schedule(Clock::duration delay, std::function<void()> fn);

  // Cancels a pending callback. If it is running right now on another thread, waits until it
  // returns, so after cancel() the callback neither runs nor is running (unless cancel is
  // called from the callback itself). Unknown or finished ids are ignored.
  void cancel(Id id);

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::pair<Id, std::function<void()>>> queue_;  // GUARDED_BY(mu_)
  std::map<Id, Clock::time_point> pending_;                                       // GUARDED_BY(mu_)
  Id next_id_ = 1;
  Id running_ = 0;        // id of the callback running now, 0 if none
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace bulkhead::agent
