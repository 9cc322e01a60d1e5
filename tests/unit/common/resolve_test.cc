// resolveHost (common/resolve.h) without the network: IP literals and the hosts file.
#include "common/resolve.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bulkhead {
namespace {

using ::testing::ElementsAre;

TEST(ResolveHost, IpLiteralsResolveToThemselves) {
  auto v4 = resolveHost("127.0.0.1");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_THAT(*v4, ElementsAre("127.0.0.1"));
  auto v6 = resolveHost("::1");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_THAT(*v6, ElementsAre("::1"));
}

TEST(ResolveHost, AnEmptyNameIsNotFoundAndNamed) {
  auto r = resolveHost("");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("cannot resolve \"\""), std::string::npos) << r.status();
}

}  // namespace
}  // namespace bulkhead
