// Time as the controller's decisions see it. core/ never reads a clock itself: the daemon
// passes SystemClock, tests pass a fake they advance by hand.
#pragma once

#include <cstdint>

namespace bulkhead::controller {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in milliseconds since the Unix epoch. Thread-safe.
  virtual int64_t nowUnixMs() const = 0;
};

}  // namespace bulkhead::controller
