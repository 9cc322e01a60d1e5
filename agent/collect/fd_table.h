// The open fds of every process, walked once per capture and shared by the collectors that
// need them (open_files writes them all, sockets finds the owners of each socket in them).
//
// The capture engine puts one FdTable in the CollectContext it hands every collector
// (CollectContext::fd_table); the first collector to ask walks <proc_root>/*/fd on its own
// thread (proc::walkOpenFds) while the others wait for the result. Shared ownership
// throughout: an abandoned collector thread holds the context, hence the table, and the walk it
// got; nothing refers to a caller's stack.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "agent/collect/collector.h"
#include "agent/linux/fd_walk.h"

namespace bulkhead::agent::collect {

// How long the walk may take: the sockets collector writes its records only after it (they
// carry their owners), so past this the walk stops and both collectors write what it found,
// each with a warning (fdWalkIncomplete). 10 s of the collectors' default 15 s time limit
// (collector.h) leaves the sockets collector time to write; open_files, which had the whole 15 s
// for its own walk before the walk was shared, loses little.
inline constexpr std::chrono::milliseconds kFdWalkBudget{10000};

class FdTable {
 public:
  explicit FdTable(std::chrono::milliseconds budget = kFdWalkBudget) : budget_(budget) {}
  FdTable(const FdTable&) = delete;
  FdTable& operator=(const FdTable&) = delete;

  // The walk of ctx.proc_root. The first caller walks, stopping at the budget or once its
  // `sink` is stopped (the walk then says kStopped, for every caller); later callers wait for
  // it and get the same result. nullptr if the caller's own sink stopped while it waited.
  // Thread-safe. A walk that throws is not kept: the next caller walks again.
  std::shared_ptr<const proc::FdWalk> get(const CollectContext& ctx, ArtifactSink& sink);

  // Walks done so far (0 or 1; tests check the sharing).
  int walks() const;

 private:
  const std::chrono::milliseconds budget_;
  mutable std::mutex mu_;
  std::condition_variable done_;
  bool walking_ = false;
  int walks_ = 0;
  std::shared_ptr<const proc::FdWalk> walk_;
};

// The walk for a collector: through ctx.fd_table when the engine set one, else a walk of the
// collector's own (a collector run alone, as in tests). nullptr as for FdTable::get.
std::shared_ptr<const proc::FdWalk> openFds(const CollectContext& ctx, ArtifactSink& sink);

// The warning a collector gives for a walk that did not reach the end ("" when it did, or
// when it stopped because `sink` itself is stopped: the engine reports that), naming `what`
// was left incomplete ("socket owners", "open files").
std::string fdWalkIncomplete(const proc::FdWalk& walk, const ArtifactSink& sink,
                             std::string_view what);

}  // namespace bulkhead::agent::collect
