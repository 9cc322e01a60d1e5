#pragma once

#include <chrono>

#include "controller/core/clock.h"

namespace bulkhead::controller {

class SystemClock final : public Clock {
 public:
  int64_t nowUnixMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace bulkhead::controller
