// Integer arithmetic on times and sizes that clamps instead of overflowing: an expiry of
// "now + ttl" with a huge ttl stays in the far future instead of wrapping into the past.
#pragma once

#include <cstdint>
#include <limits>

namespace bulkhead {

// a + b, clamped to [INT64_MIN, INT64_MAX].
constexpr int64_t saturatingAdd(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return r;
}

// a - b, clamped to [INT64_MIN, INT64_MAX].
constexpr int64_t saturatingSub(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) {
    return b < 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return r;
}

}  // namespace bulkhead
