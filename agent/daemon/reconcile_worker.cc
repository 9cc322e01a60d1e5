#include "agent/daemon/reconcile_worker.h"

#include <algorithm>
#include <future>

#include <spdlog/spdlog.h>

namespace bulkhead::agent {

ReconcileWorker::ReconcileWorker(Reconciler* reconciler, ReconcileSink* sink,
                                 std::chrono::milliseconds backstop)
    : reconciler_(reconciler), sink_(sink), backstop_(backstop) {
  thread_ = std::thread([this] { run(); });
}

ReconcileWorker::~ReconcileWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ReconcileWorker::runSync(const std::function<void(Reconciler&)>& fn) {
  std::promise<void> done;
  auto fut = done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    sync_.push_back([&] {
      fn(*reconciler_);
      done.set_value();
    });
  }
  cv_.notify_all();
  fut.wait();
}

void ReconcileWorker::runAsync(std::function<void(Reconciler&)> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    sync_.push_back([this, fn = std::move(fn)] { fn(*reconciler_); });
  }
  cv_.notify_all();
}

void ReconcileWorker::desiredState(const bulkhead::v1::DesiredState& state) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (desired_ && desired_->generation() > state.generation()) return;
    desired_ = state;
  }
  cv_.notify_all();
}

void ReconcileWorker::preview(const std::string& command_id, const bulkhead::v1::DesiredState& state) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    previews_.emplace_back(command_id, state);
  }
  cv_.notify_all();
}

void ReconcileWorker::recheck(const std::string& what) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!recheck_) {
      recheck_ = what;
    } else if (!what.empty() && recheck_->find(what) == std::string::npos) {
      *recheck_ += recheck_->empty() ? what : "; " + what;
    }
  }
  cv_.notify_all();
}

void ReconcileWorker::pinnedController(std::vector<bulkhead::v1::Endpoint> endpoints) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pinned_ = std::move(endpoints);
  }
  cv_.notify_all();
}

void ReconcileWorker::run() {
  using Clock = std::chrono::system_clock;
  auto next_backstop = std::chrono::steady_clock::now() + backstop_;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const int64_t deadline_ms = reconciler_->nextDeadline();
    auto wake = std::chrono::steady_clock::now() + std::chrono::hours(1);
    if (backstop_.count() > 0) wake = std::min(wake, next_backstop);
    if (deadline_ms > 0) {
      auto until = std::chrono::milliseconds(deadline_ms) -
                   std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch());
      // Clamped to the hour-long wait: a far deadline (years away) must not overflow the
      // steady clock's nanoseconds into the past.
      until = std::clamp<std::chrono::milliseconds>(until, std::chrono::milliseconds(0),
                                                    std::chrono::hours(1));
      wake =
          std::min(wake, std::chrono::steady_clock::now() + until + std::chrono::milliseconds(1));
    }
    cv_.wait_until(lock, wake, [&] {
      return stop_ || !sync_.empty() || desired_ || !previews_.empty() || recheck_ || pinned_;
    });
    if (stop_) break;

    if (!sync_.empty()) {
      auto fn = std::move(sync_.front());
      sync_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
      continue;
    }
    if (pinned_) {
      auto endpoints = std::move(*pinned_);
      pinned_.reset();
      lock.unlock();
      if (auto r = reconciler_->setPinnedController(std::move(endpoints))) {
        sink_->onReport(*r, reconciler_->state());
      }
      lock.lock();
      continue;
    }
    if (desired_) {
      auto state = std::move(*desired_);
      desired_.reset();
      lock.unlock();
      auto r = reconciler_->apply(state);
      sink_->onReport(r, reconciler_->state());
      lock.lock();
      continue;
    }
    if (!previews_.empty()) {
      auto [id, state] = std::move(previews_.front());
      previews_.pop_front();
      lock.unlock();
      sink_->onCommandResult(reconciler_->preview(id, state));
      lock.lock();
      continue;
    }
    std::optional<std::string> what;
    if (recheck_) {
      what = std::move(*recheck_);
      recheck_.reset();
    } else if (backstop_.count() > 0 && std::chrono::steady_clock::now() >= next_backstop) {
      what = "";
    }
    lock.unlock();
    if (what) {
      if (auto e = reconciler_->recheck(*what)) {
        sink_->onTamper(*e, reconciler_->state());
      }
      next_backstop = std::chrono::steady_clock::now() + backstop_;
    }
    if (auto r = reconciler_->tick()) sink_->onReport(*r, reconciler_->state());
    lock.lock();
  }
}

}  // namespace bulkhead::agent
