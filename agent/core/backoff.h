// Jittered exponential backoff for reconnects. Pure: the randomness comes from a seeded
// generator, so tests are deterministic and callers pick the seed.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace bulkhead::agent {

struct BackoffPolicy {
  std::chrono::milliseconds initial{200};
  std::chrono::milliseconds max{10'000};
  double multiplier = 2.0;
  double jitter = 0.2;   // each delay is base * (1 + u), u uniform in [-jitter, +jitter]
};

// Not thread-safe.
class Backoff {
 public:
  Backoff(BackoffPolicy policy, uint64_t seed);

  // The delay before the next attempt: base starts at `initial` and is multiplied by
  // `multiplier` after each call, capped at `max`; the returned delay is the base with
  // jitter applied, so it lies in [base * (1 - jitter), base * (1 + jitter)] and is >= 1 ms.
  std::chrono::milliseconds next();

  // After a successful connection: the next delay starts again from `initial`.
  void reset();

  // The base (un-jittered) delay the next call to next() will use.
  std::chrono::milliseconds currentBase() const { return base_; }

 private:
  BackoffPolicy policy_;
  std::chrono::milliseconds base_;
  std::mt19937_64 rng_;
};

}  // namespace bulkhead::agent
