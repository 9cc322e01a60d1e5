// Whether an agent's stream is admitted on its Hello: each refusal with its status code and a
// message naming what is wrong, in the order they are checked; the accepted Hello's facts.
#include "controller/service/agent_admission.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/protocol_version.h"
#include "controller/core/hello.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

const AgentCertificate kWeb01{.host_id = "web-01", .serial = "0A1B2C"};

v1::Hello honest() {
  v1::Hello h;
  h.set_host_id("web-01");
  h.set_hostname("web-01.lab");
  h.add_addresses("10.77.0.11/16");
  h.set_agent_version("0.4.0");
  h.set_enforced_generation(3);
  h.mutable_protocol()->set_major(kProtocolVersion.major);
  h.mutable_protocol()->set_minor(kProtocolVersion.minor);
  return h;
}

RevocationCheck revoking(std::set<std::string> serials) {
  return [serials = std::move(serials)](const std::string& s) { return serials.contains(s); };
}

TEST(AgentAdmission, AnHonestHelloIsAdmittedWithItsFacts) {
  auto info = admitAgentHello(kWeb01, honest(), revoking({"FFFF"}));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->hostname, "web-01.lab");
  EXPECT_EQ(info->enforced_generation, 3u);
  // No revocation list: nothing is revoked. An empty host_id means the certificate's.
  v1::Hello anonymous = honest();
  anonymous.clear_host_id();
  EXPECT_TRUE(admitAgentHello(kWeb01, anonymous, nullptr).ok());
  // An agent from before the protocol exchange speaks 1.0, the same major.
  v1::Hello old = honest();
  old.clear_protocol();
  EXPECT_TRUE(admitAgentHello(kWeb01, old, nullptr).ok());
}

TEST(AgentAdmission, ARevokedCertificateIsRefusedFirst) {
  v1::Hello hello = honest();
  hello.set_host_id("db-01");  // would be refused too, later
  auto refused = admitAgentHello(kWeb01, hello, revoking({"0A1B2C"}));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "the agent certificate of \"web-01\" (serial 0A1B2C) is revoked");
}

TEST(AgentAdmission, AHostIdOtherThanTheCertificatesIsRefused) {
  v1::Hello hello = honest();
  hello.set_host_id("db-01");
  hello.set_hostname("not valid");  // checked after the host id
  auto refused = admitAgentHello(kWeb01, hello, revoking({}));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "hello.host_id \"db-01\" does not match the certificate's host id \"web-01\"");
}

TEST(AgentAdmission, AnInvalidFieldIsRefusedNamingIt) {
  v1::Hello hello = honest();
  hello.add_addresses("127.0.0.1/8");
  hello.mutable_protocol()->set_major(kProtocolVersion.major + 1);  // checked after the fields
  auto refused = admitAgentHello(kWeb01, hello, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(), helloInfoFrom(hello).status().message());
  EXPECT_NE(refused.status().message().find("hello.addresses"), std::string::npos)
      << refused.status();
}

TEST(AgentAdmission, AnotherProtocolMajorIsRefusedSayingWhichSideToUpgrade) {
  v1::Hello hello = honest();
  hello.set_agent_version("9.0.0");
  hello.mutable_protocol()->set_major(kProtocolVersion.major + 1);
  auto refused = admitAgentHello(kWeb01, hello, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string m(refused.status().message());
  EXPECT_NE(m.find("agent web-01 (bulkhead 9.0.0)"), std::string::npos) << m;
  EXPECT_NE(m.find("upgrade this controller"), std::string::npos) << m;
  // Without a version the agent is named all the same.
  hello.clear_agent_version();
  refused = admitAgentHello(kWeb01, hello, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("agent web-01 (bulkhead of unknown version)"),
            std::string::npos)
      << refused.status();
}

}  // namespace
}  // namespace bulkhead::controller
