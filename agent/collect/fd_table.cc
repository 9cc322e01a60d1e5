#include "agent/collect/fd_table.h"

#include <fmt/format.h>

#include <utility>

namespace bulkhead::agent::collect {
namespace {

// How often a waiting collector looks at its own sink: stopped() has no notification.
constexpr std::chrono::milliseconds kWaitPoll{20};

}  // namespace

std::shared_ptr<const proc::FdWalk> FdTable::get(const CollectContext& ctx, ArtifactSink& sink) {
  std::unique_lock lock(mu_);
  while (walk_ == nullptr) {
    if (!walking_) {
      walking_ = true;
      lock.unlock();
      std::shared_ptr<const proc::FdWalk> walk;
      try {
        walk = std::make_shared<const proc::FdWalk>(
            proc::walkOpenFds(ctx.proc_root, budget_, [&] { return sink.stopped(); }));
      } catch (...) {
        lock.lock();
        walking_ = false;
        done_.notify_all();
        throw;
      }
      lock.lock();
      walking_ = false;
      ++walks_;
      walk_ = std::move(walk);
      done_.notify_all();
      break;
    }
    if (sink.stopped()) return nullptr;
    done_.wait_for(lock, kWaitPoll);
  }
  return walk_;
}

int FdTable::walks() const {
  std::lock_guard lock(mu_);
  return walks_;
}

std::shared_ptr<const proc::FdWalk> openFds(const CollectContext& ctx, ArtifactSink& sink) {
  if (ctx.fd_table != nullptr) return ctx.fd_table->get(ctx, sink);
  FdTable own;
  return own.get(ctx, sink);
}

std::string fdWalkIncomplete(const proc::FdWalk& walk, const ArtifactSink& sink,
                             std::string_view what) {
  using End = proc::FdWalk::End;
  switch (walk.end) {
    case End::kComplete: return "";
    case End::kNoProc: return fmt::format("{} not found: {}", what, walk.error);
    case End::kOverBudget:
      return fmt::format("{} incomplete: the /proc fd scan passed its {} ms budget", what,
                         walk.budget.count());
    case End::kStopped:
      if (sink.stopped()) return "";
      return fmt::format(
          "{} incomplete: the /proc fd scan was cut (the collector that ran it was stopped)", what);
  }
  return "";
}

}  // namespace bulkhead::agent::collect
