#include "agent/core/backoff.h"

#include <algorithm>
#include <cmath>

namespace bulkhead::agent {

Backoff::Backoff(BackoffPolicy policy, uint64_t seed)
    : policy_(policy), base_(policy.initial), rng_(seed) {
  if (policy_.initial.count() < 1) policy_.initial = std::chrono::milliseconds(1);
  if (policy_.max < policy_.initial) policy_.max = policy_.initial;
  policy_.multiplier = std::max(1.0, policy_.multiplier);
  policy_.jitter = std::clamp(policy_.jitter, 0.0, 0.99);
  base_ = policy_.initial;
}

std::chrono::milliseconds Backoff::next() {
  std::uniform_real_distribution<double> u(-policy_.jitter, policy_.jitter);
  double delay = static_cast<double>(base_.count()) * (1.0 + u(rng_));
  auto out = std::chrono::milliseconds(std::max<int64_t>(1, std::llround(delay)));
  double grown = static_cast<double>(base_.count()) * policy_.multiplier;
  base_ = std::chrono::milliseconds(
      std::min<int64_t>(policy_.max.count(), static_cast<int64_t>(std::ceil(grown))));
  return out;
}

void Backoff::reset() { base_ = policy_.initial; }

}  // namespace bulkhead::agent
