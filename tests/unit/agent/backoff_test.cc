#include "agent/core/backoff.h"

#include <set>

#include <gtest/gtest.h>

namespace bulkhead::agent {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, DelaysStayWithinJitterBoundsAndCapAtMax) {
  BackoffPolicy p;  // 200 ms doubling to 10 s, +-20 %
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Backoff b(p, seed);
    int64_t base = 200;
    for (int i = 0; i < 20; ++i) {
      auto d = b.next();
      EXPECT_GE(d.count(), static_cast<int64_t>(base * 0.8) - 1) << "attempt " << i;
      EXPECT_LE(d.count(), static_cast<int64_t>(base * 1.2) + 1) << "attempt " << i;
      base = std::min<int64_t>(base * 2, 10'000);
    }
    EXPECT_EQ(b.currentBase(), milliseconds(10'000));
  }
}

TEST(Backoff, JitterActuallySpreadsDelays) {
  // Two agents restarted together must not reconnect in lock-step.
  std::set<int64_t> firsts;
  for (uint64_t seed = 0; seed < 100; ++seed) firsts.insert(Backoff(BackoffPolicy{}, seed).next().count());
  EXPECT_GT(firsts.size(), 30u);
  EXPECT_LT(*firsts.begin(), 180);
  EXPECT_GT(*firsts.rbegin(), 220);
}

TEST(Backoff, ResetStartsOver) {
  Backoff b(BackoffPolicy{milliseconds(100), milliseconds(1000), 2.0, 0.0}, 1);
  EXPECT_EQ(b.next(), milliseconds(100));
  EXPECT_EQ(b.next(), milliseconds(200));
  EXPECT_EQ(b.next(), milliseconds(400));
  EXPECT_EQ(b.next(), milliseconds(800));
  EXPECT_EQ(b.next(), milliseconds(1000));
  EXPECT_EQ(b.next(), milliseconds(1000));
  b.reset();
  EXPECT_EQ(b.next(), milliseconds(100));
}

TEST(Backoff, DegeneratePolicyIsSane) {
  Backoff b(BackoffPolicy{milliseconds(0), milliseconds(0), 0.5, 5.0}, 7);
  for (int i = 0; i < 10; ++i) {
    auto d = b.next();
    EXPECT_GE(d.count(), 1);
    EXPECT_LE(d.count(), 2);
  }
}

}  // namespace
}  // namespace bulkhead::agent
