#include "agent/daemon/controller_pin.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "common/tls/tls.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/bulkhead-pin-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(ControllerPin, GrpcTargetsPerFamily) {
  PinnedController p{"ctl", 7443, {"10.77.0.2", "10.77.0.3", "fd77::2"}, 0};
  auto t = grpcTargets(p);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0], "ipv4:10.77.0.2:7443,10.77.0.3:7443");
  EXPECT_EQ(t[1], "ipv6:[fd77::2]:7443");
  EXPECT_EQ(grpcTargets(PinnedController{"x", 1, {"fd77::9"}, 0}),
            std::vector<std::string>{"ipv6:[fd77::9]:1"});
}

TEST(ControllerPin, IpLiteralNeedsNoResolverAndIsPersisted) {
  TempDir dir;
  auto pin = pinController({"10.77.0.2", 7443}, dir.path(), resolveWithGetaddrinfo, 5);
  ASSERT_TRUE(pin.ok()) << pin.status();
  EXPECT_EQ(pin->ips, std::vector<std::string>{"10.77.0.2"});
  auto back = readPin(dir.path());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->host, "10.77.0.2");
  EXPECT_EQ(back->port, 7443);
}

TEST(ControllerPin, ResolvedOnceThenReusedWhenDnsFails) {
  TempDir dir;
  int calls = 0;
  Resolver ok = [&](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
    ++calls;
    EXPECT_EQ(host, "ctl.example");
    return std::vector<std::string>{"fd77::2", "10.77.0.2"};
  };
  Resolver down = [&](const std::string&) -> absl::StatusOr<std::vector<std::string>> {
    return absl::UnavailableError("cannot resolve controller name \"ctl.example\"");
  };
  auto first = pinController({"ctl.example", 7443}, dir.path(), ok, 100);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->ips, (std::vector<std::string>{"10.77.0.2", "fd77::2"}));  // v4 first
  auto again = pinController({"ctl.example", 7443}, dir.path(), down, 200);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ips, first->ips);
  EXPECT_EQ(again->pinned_at_unix_ms, 100);
  // A different controller does not reuse the old pin.
  auto other = pinController({"other.example", 7443}, dir.path(), down, 300);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kUnavailable);
  auto other_port = pinController({"ctl.example", 8443}, dir.path(), down, 300);
  EXPECT_EQ(other_port.status().code(), absl::StatusCode::kUnavailable);
}

TEST(ControllerPin, CorruptPinIsAnErrorNamingTheFile) {
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(pinPath(dir.path()), "{\"host\":\"x\",\"port\":1,\"ips\":[\"nope\"]}",
                              0600)
                  .ok());
  auto p = readPin(dir.path());
  ASSERT_FALSE(p.ok());
  EXPECT_NE(std::string(p.status().message()).find("controller.json"), std::string::npos);
  EXPECT_NE(std::string(p.status().message()).find("nope"), std::string::npos);
  EXPECT_FALSE(parsePin("[]").ok());
  EXPECT_FALSE(parsePin("{\"host\":\"x\",\"port\":70000,\"ips\":[\"10.0.0.1\"]}").ok());
  EXPECT_TRUE(parsePin(serializePin({"x", 1, {"10.0.0.1"}, 3})).ok());
}

}  // namespace
}  // namespace bulkhead::agent
