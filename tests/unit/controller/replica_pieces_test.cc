#include "controller/core/replica_pieces.h"

#include <gtest/gtest.h>

#include <string>

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

// A result as large as a busy host's session list: several pieces.
std::string bigEvent() {
  v1::ReplicaEvent e;
  e.set_replica("c");
  e.mutable_result()->set_host_id("web-01");
  e.mutable_result()->mutable_result()->set_command_id("cmd-1");
  e.mutable_result()->mutable_result()->set_error(std::string(12000, 'x'));
  return e.SerializeAsString();
}

TEST(ReplicaPieces, ALargeEventSplitsIntoPiecesAndComesBackWhole) {
  const std::string bytes = bigEvent();
  auto pieces = splitReplicaEvent("c", 7, bytes, 5000);
  ASSERT_EQ(pieces.size(), 3u);
  ReplicaAssembler assembler(10);
  for (size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i].replica(), "c");
    EXPECT_LE(pieces[i].part().data().size(), 5000u);
    auto whole = assembler.add("c", pieces[i].part());
    if (i + 1 < pieces.size()) {
      EXPECT_FALSE(whole.has_value());
    } else {
      ASSERT_TRUE(whole.has_value());
      EXPECT_EQ(*whole, bytes);
    }
  }
  EXPECT_EQ(assembler.unfinished(), 0u);
}

TEST(ReplicaPieces, TwoSendersPiecesInterleavedStayApart) {
  const std::string bytes = bigEvent();
  auto from_a = splitReplicaEvent("a", 1, bytes, 4000);
  auto from_b = splitReplicaEvent("b", 1, bytes + "", 4000);
  ReplicaAssembler assembler(10);
  std::optional<std::string> whole_a, whole_b;
  for (size_t i = 0; i < from_a.size(); ++i) {
    whole_a = assembler.add("a", from_a[i].part());
    whole_b = assembler.add("b", from_b[i].part());
  }
  EXPECT_EQ(whole_a, bytes);
  EXPECT_EQ(whole_b, bytes);
}

// A lost piece (the link reconnected) drops the event: never put together wrong.
TEST(ReplicaPieces, APieceMissingDropsTheEvent) {
  auto pieces = splitReplicaEvent("c", 3, bigEvent(), 5000);
  ReplicaAssembler assembler(10);
  EXPECT_FALSE(assembler.add("c", pieces[0].part()).has_value());
  EXPECT_FALSE(assembler.add("c", pieces[2].part()).has_value());  // [1] lost
  EXPECT_EQ(assembler.unfinished(), 0u);
  // The next event of that sender comes through.
  auto next = splitReplicaEvent("c", 4, bigEvent(), 5000);
  std::optional<std::string> whole;
  for (const auto& p : next) whole = assembler.add("c", p.part());
  EXPECT_TRUE(whole.has_value());
}

TEST(ReplicaPieces, TooManyPiecesAreRefusedAndASilentSendersPiecesForgotten) {
  auto pieces = splitReplicaEvent("c", 5, bigEvent(), 1000);  // 13 pieces
  ReplicaAssembler assembler(10);
  EXPECT_FALSE(assembler.add("c", pieces[0].part()).has_value());
  EXPECT_EQ(assembler.unfinished(), 0u);
  ReplicaAssembler roomy(20);
  EXPECT_FALSE(roomy.add("c", pieces[0].part()).has_value());
  EXPECT_EQ(roomy.unfinished(), 1u);
  roomy.forget("c");
  EXPECT_EQ(roomy.unfinished(), 0u);
}

}  // namespace
}  // namespace bulkhead::controller
