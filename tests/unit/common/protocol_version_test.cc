// The protocol version exchange's rules (common/protocol_version.h).
#include "common/protocol_version.h"

#include <gtest/gtest.h>

namespace bulkhead {
namespace {

TEST(ProtocolVersion, AbsentFieldIsTheReleaseBeforeTheExchange) {
  EXPECT_EQ(peerProtocol(false, 7, 7), (ProtocolVersion{1, 0}));
  EXPECT_EQ(peerProtocol(true, 2, 3), (ProtocolVersion{2, 3}));
}

TEST(ProtocolVersion, MinorsApartWorkBothWays) {
  EXPECT_TRUE(checkPeerProtocol("this controller", "agent a", {1, 0}, {1, 1}).ok());
  EXPECT_TRUE(checkPeerProtocol("this agent", "the controller", {1, 1}, {1, 0}).ok());
  EXPECT_TRUE(checkPeerProtocol("this agent", "the controller", {1, 9}, {1, 1}).ok());
}

TEST(ProtocolVersion, MajorsApartAreRefusedNamingWhomToUpgrade) {
  auto newer_peer =
      checkPeerProtocol("this controller", "agent web-03 (bulkhead 2.0.0)", {2, 0}, {1, 1});
  EXPECT_EQ(newer_peer.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(newer_peer.message(),
            "agent web-03 (bulkhead 2.0.0) speaks protocol 2.0, this controller speaks 1.1: "
            "major versions differ and neither understands the other; upgrade this controller "
            "to a release speaking protocol 2.x");
  auto older_peer = checkPeerProtocol("this agent", "the controller", {0, 9}, {1, 1});
  EXPECT_EQ(older_peer.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(older_peer.message().find("upgrade the controller to a release speaking protocol 1.x"),
            std::string::npos)
      << older_peer.message();
}

TEST(ProtocolVersion, ParsesMajorDotMinorOnly) {
  ProtocolVersion v;
  ASSERT_TRUE(parseProtocolVersion("1.0", &v).ok());
  EXPECT_EQ(v, (ProtocolVersion{1, 0}));
  ASSERT_TRUE(parseProtocolVersion("12.345", &v).ok());
  EXPECT_EQ(v, (ProtocolVersion{12, 345}));
  for (const char* bad : {"", "1", "1.", ".1", "1.x", "1.1.1", "-1.0", "99999.0", " 1.0"}) {
    EXPECT_FALSE(parseProtocolVersion(bad, &v).ok()) << bad;
  }
  EXPECT_EQ(protocolText({1, 1}), "1.1");
}

}  // namespace
}  // namespace bulkhead
