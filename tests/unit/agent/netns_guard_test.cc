#include "agent/linux/netns_guard.h"

#include <gtest/gtest.h>

namespace bulkhead::agent {
namespace {

TEST(NetnsGuard, InitOnlySysctlsMeanInitialNamespace) {
  NetnsProbe p{true, true, 4026532246, 4026532300, 4026532246};
  EXPECT_EQ(classifyNetns(p).verdict, NetnsVerdict::kInitial);
}

TEST(NetnsGuard, FixedInitNetInodeMeansInitial) {
  NetnsProbe p{false, false, kInitNetnsInode, 4026532300, 0};
  EXPECT_EQ(classifyNetns(p).verdict, NetnsVerdict::kInitial);
}

TEST(NetnsGuard, SameNetnsAsRealInitMeansInitial) {
  NetnsProbe p{false, false, 4026531992, kInitPidnsInode, 4026531992};
  EXPECT_EQ(classifyNetns(p).verdict, NetnsVerdict::kInitial);
}

TEST(NetnsGuard, LabHostInChildPidNamespaceIsNotInitial) {
  // The lab: own PID namespace (so /proc/1 is the lab holder, same netns), no init-only sysctls.
  NetnsProbe p{true, false, 4026532387, 4026532390, 4026532387};
  auto r = classifyNetns(p);
  EXPECT_EQ(r.verdict, NetnsVerdict::kNotInitial) << r.evidence;
  EXPECT_TRUE(checkEnforcementAllowed(r, false).ok());
}

TEST(NetnsGuard, DifferentNetnsFromRealInitIsNotInitial) {
  NetnsProbe p{false, false, 4026532387, kInitPidnsInode, 4026531992};
  EXPECT_EQ(classifyNetns(p).verdict, NetnsVerdict::kNotInitial);
}

TEST(NetnsGuard, UnknownIsRefusedUnlessAllowed) {
  NetnsProbe p{false, false, 4026532387, 4026532390, 0};
  auto r = classifyNetns(p);
  EXPECT_EQ(r.verdict, NetnsVerdict::kUnknown);
  auto s = checkEnforcementAllowed(r, false);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("--allow-root-netns"), std::string::npos);
  EXPECT_TRUE(checkEnforcementAllowed(r, true).ok());
}

TEST(NetnsGuard, InitialIsRefusedUnlessAllowed) {
  auto r = classifyNetns(NetnsProbe{true, true, 1, 2, 1});
  EXPECT_EQ(checkEnforcementAllowed(r, false).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(checkEnforcementAllowed(r, true).ok());
}

TEST(NetnsGuard, ThisTestProcessIsNotAllowedByDefault) {
  // Unit tests run in the machine's own namespace (never in a lab): the live probe must not
  // allow enforcement here. If this fails, the test runner itself is in a throw-away
  // namespace; that is fine, so only check the verdict is not "not initial" when init-only
  // sysctls are visible.
  NetnsProbe live = probeNetns();
  if (live.init_only_sysctl_present) {
    EXPECT_FALSE(checkEnforcementAllowed(classifyNetns(live), false).ok());
  }
}

}  // namespace
}  // namespace bulkhead::agent
