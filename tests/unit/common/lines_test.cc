#include "common/lines.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bulkhead {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(SplitLines, ALastLineWithoutNewlineCountsAndNothingFollowsAFinalNewline) {
  EXPECT_THAT(splitLines(""), IsEmpty());
  EXPECT_THAT(splitLines("\n"), ElementsAre(""));
  EXPECT_THAT(splitLines("a\nb"), ElementsAre("a", "b"));
  EXPECT_THAT(splitLines("a\nb\n"), ElementsAre("a", "b"));
  EXPECT_THAT(splitLines("a\n\nb\n"), ElementsAre("a", "", "b"));
  EXPECT_THAT(splitLines("Name:\tsshd\r\n"), ElementsAre("Name:\tsshd\r"));  // only '\n' ends
}

TEST(SplitSpaces, RunsOfSpacesAndTabsSeparateFields) {
  EXPECT_THAT(splitSpaces(""), IsEmpty());
  EXPECT_THAT(splitSpaces(" \t "), IsEmpty());
  EXPECT_THAT(splitSpaces("  0: 0100007F:0016 \t00000000:0000 0A"),
              ElementsAre("0:", "0100007F:0016", "00000000:0000", "0A"));
  EXPECT_THAT(splitSpaces("one"), ElementsAre("one"));
}

}  // namespace
}  // namespace bulkhead
