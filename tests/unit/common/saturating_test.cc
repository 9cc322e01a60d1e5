#include "common/saturating.h"

#include <gtest/gtest.h>

namespace bulkhead {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

TEST(Saturating, ClampsInsteadOfWrapping) {
  EXPECT_EQ(saturatingAdd(1'700'000'000'000, kMax - 5), kMax);
  EXPECT_EQ(saturatingAdd(-10, kMin), kMin);
  EXPECT_EQ(saturatingAdd(40, 2), 42);
  EXPECT_EQ(saturatingSub(kMin + 1, 200), kMin);
  EXPECT_EQ(saturatingSub(5, kMin), kMax);
  EXPECT_EQ(saturatingSub(44, 2), 42);
}

}  // namespace
}  // namespace bulkhead
