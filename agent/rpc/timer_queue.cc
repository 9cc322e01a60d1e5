#include "agent/rpc/timer_queue.h"

namespace bulkhead::agent {

TimerQueue::TimerQueue() { thread_ = std::thread([this] { run(); }); }

TimerQueue::~TimerQueue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queue_.clear();
    pending_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

TimerQueue::Id TimerQueue::schedule(Clock::duration delay, std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  Id id = next_id_++;
  auto when = Clock::now() + delay;
  queue_.emplace(when, std::make_pair(id, std::move(fn)));
  pending_[id] = when;
  cv_.notify_all();
  return id;
}

void TimerQueue::cancel(Id id) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = pending_.find(id);
  if (it != pending_.end()) {
    auto range = queue_.equal_range(it->second);
    for (auto q = range.first; q != range.second; ++q) {
      if (q->second.first == id) {
        queue_.erase(q);
        break;
      }
    }
    pending_.erase(it);
    return;
  }
  if (std::this_thread::get_id() == thread_.get_id()) return;
  cv_.wait(lock, [&] { return running_ != id; });
}

void TimerQueue::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = queue_.begin();
    if (first->first > Clock::now()) {
      // A copy: cancel() may erase the entry (and its time point) while this waits.
      const Clock::time_point when = first->first;
      cv_.wait_until(lock, when);
      continue;
    }
    Id id = first->second.first;
    std::function<void()> fn = std::move(first->second.second);
    queue_.erase(first);
    pending_.erase(id);
    running_ = id;
    lock.unlock();
    fn();
    lock.lock();
    running_ = 0;
    cv_.notify_all();
  }
}

}  // namespace bulkhead::agent
