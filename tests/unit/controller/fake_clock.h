#pragma once

#include <atomic>
#include <chrono>

#include "controller/core/clock.h"

namespace bulkhead::controller {

// A clock that moves only when the test says so. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'700'000'000'000) : now_(start_ms) {}
  int64_t nowUnixMs() const override { return now_.load(); }
  void advance(std::chrono::milliseconds d) { now_ += d.count(); }
  void set(int64_t ms) { now_ = ms; }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace bulkhead::controller
