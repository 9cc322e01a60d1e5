#include "common/scheduler.h"

#include <pthread.h>

#include <spdlog/spdlog.h>

namespace bulkhead {

Scheduler::Scheduler(std::string name) : name_(std::move(name)) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
    run();
  });
}

Scheduler::~Scheduler() { stop(); }

bool Scheduler::every(std::chrono::milliseconds period, std::function<void()> fn) {
  return add(Clock::now() + period, period, std::move(fn));
}

bool Scheduler::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  return add(Clock::now() + delay, std::chrono::milliseconds(0), std::move(fn));
}

bool Scheduler::add(Clock::time_point due, std::chrono::milliseconds period,
                    std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    tasks_.push(Task{due, seq_++, period, std::move(fn)});
  }
  cv_.notify_one();
  return true;
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

bool Scheduler::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

void Scheduler::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (tasks_.empty()) {
      if (stopping_) return;
      cv_.wait(lock);
      continue;
    }
    // A copy: wait_until keeps reading its argument while add() may reallocate the queue.
    const Clock::time_point due = tasks_.top().due;
    if (due > Clock::now()) {
      if (stopping_) return;
      cv_.wait_until(lock, due);
      continue;
    }
    Task t = tasks_.top();
    tasks_.pop();
    lock.unlock();
    try {
      t.fn();
    } catch (const std::exception& e) {
      spdlog::error("{}: task failed: {}", name_, e.what());
    }
    lock.lock();
    if (t.period.count() > 0 && !stopping_) {
      t.due = std::max(t.due + t.period, Clock::now());
      t.seq = seq_++;
      tasks_.push(std::move(t));
    }
  }
}

}  // namespace bulkhead
