#include "agent/daemon/controller_pin.h"

#include <unistd.h>

#include <filesystem>
#include <map>

#include <fmt/format.h>
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

// A fake DNS: names in `zone` resolve, others fail; IP literals resolve to themselves.
struct FakeDns {
  std::map<std::string, std::vector<std::string>> zone;
  std::vector<std::string> asked;
  Resolver resolver() {
    return [this](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
      asked.push_back(host);
      auto it = zone.find(host);
      if (it != zone.end()) return it->second;
      auto literal = resolveWithGetaddrinfo(host);
      if (literal.ok() && literal->size() == 1 && literal->front() == host) return literal;
      return absl::UnavailableError(fmt::format("cannot resolve controller name \"{}\"", host));
    };
  }
};

std::vector<std::string> hostsOf(const std::vector<PinnedController>& pins) {
  std::vector<std::string> out;
  out.reserve(pins.size());
  for (const auto& p : pins) out.push_back(fmt::format("{}:{}", p.host, p.port));
  return out;
}

TEST(ControllerPins, OneFilePerControllerTheFirstInControllerJson) {
  TempDir dir;
  FakeDns dns;
  dns.zone["ctl-a.example"] = {"fd77::2", "10.77.0.2"};
  auto pins = pinControllers({{"ctl-a.example", 7443}, {"10.77.0.3", 7443}, {"fd77::4", 8443}},
                             dir.path(), dns.resolver(), 100);
  ASSERT_TRUE(pins.ok()) << pins.status();
  EXPECT_TRUE(pins->unpinned.empty());
  EXPECT_EQ(hostsOf(pins->pins),
            (std::vector<std::string>{"ctl-a.example:7443", "10.77.0.3:7443", "fd77::4:8443"}));
  EXPECT_EQ(pinPath(dir.path()), dir.path() / "controller.json");
  EXPECT_EQ(pinPath(dir.path(), 0), dir.path() / "controller.json");
  EXPECT_EQ(pinPath(dir.path(), 1), dir.path() / "controller-2.json");
  EXPECT_EQ(pinPath(dir.path(), 2), dir.path() / "controller-3.json");
  // The first stays where a single-controller agent reads and wrote it.
  auto first = readPin(dir.path());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->host, "ctl-a.example");
  EXPECT_EQ(first->ips, (std::vector<std::string>{"10.77.0.2", "fd77::2"}));
  auto second = parsePin(*readFile(dir.path() / "controller-2.json"));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->host, "10.77.0.3");
  std::vector<absl::Status> errors;
  auto back = readPins(dir.path(), &errors);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(hostsOf(back), hostsOf(pins->pins));
  // The session's targets: controller after controller, v4 then v6 within each.
  EXPECT_EQ(grpcTargets(back),
            (std::vector<std::string>{"ipv4:10.77.0.2:7443", "ipv6:[fd77::2]:7443",
                                      "ipv4:10.77.0.3:7443", "ipv6:[fd77::4]:8443"}));
  auto eps = controllerEndpoints(back);
  std::vector<std::string> ep_text;
  ep_text.reserve(eps.size());
  for (const auto& e : eps) ep_text.push_back(fmt::format("{} {}", e.ip(), e.port()));
  EXPECT_EQ(ep_text, (std::vector<std::string>{"10.77.0.2 7443", "fd77::2 7443", "10.77.0.3 7443",
                                               "fd77::4 8443"}));
}

TEST(ControllerPins, AnUnresolvableNameUsesItsPreviousPinWhereverItWas) {
  TempDir dir;
  FakeDns dns;
  dns.zone["ctl-a.example"] = {"10.77.0.2"};
  dns.zone["ctl-b.example"] = {"10.77.0.3"};
  ASSERT_TRUE(pinControllers({{"ctl-a.example", 7443}, {"ctl-b.example", 7443}}, dir.path(),
                             dns.resolver(), 100)
                  .ok());
  // DNS is down (isolation, an outage) and the list was reordered.
  FakeDns down;
  auto pins = pinControllers({{"ctl-b.example", 7443}, {"ctl-a.example", 7443}}, dir.path(),
                             down.resolver(), 200);
  ASSERT_TRUE(pins.ok()) << pins.status();
  EXPECT_TRUE(pins->unpinned.empty());
  ASSERT_EQ(pins->pins.size(), 2u);
  EXPECT_EQ(pins->pins[0].host, "ctl-b.example");
  EXPECT_EQ(pins->pins[0].ips, std::vector<std::string>{"10.77.0.3"});
  EXPECT_EQ(pins->pins[0].pinned_at_unix_ms, 100);
  EXPECT_EQ(pins->pins[1].host, "ctl-a.example");
  EXPECT_EQ(pins->pins[1].ips, std::vector<std::string>{"10.77.0.2"});
  // The files follow the new order.
  EXPECT_EQ(hostsOf(readPins(dir.path())),
            (std::vector<std::string>{"ctl-b.example:7443", "ctl-a.example:7443"}));
  EXPECT_EQ(readPin(dir.path())->host, "ctl-b.example");
}

TEST(ControllerPins, AControllerWithNeitherAddressNorPinIsLeftOutAndTheOthersUsed) {
  TempDir dir;
  FakeDns dns;
  dns.zone["ctl-b.example"] = {"10.77.0.3"};
  // A stale first pin of a controller no longer configured.
  ASSERT_TRUE(writeFileAtomic(pinPath(dir.path()),
                              serializePin({"old.example", 7443, {"10.77.0.9"}, 1}), 0600)
                  .ok());
  auto pins = pinControllers({{"ctl-a.example", 7443}, {"ctl-b.example", 7443}}, dir.path(),
                             dns.resolver(), 100);
  ASSERT_TRUE(pins.ok()) << pins.status();
  EXPECT_EQ(hostsOf(pins->pins), std::vector<std::string>{"ctl-b.example:7443"});
  ASSERT_EQ(pins->unpinned.size(), 1u);
  EXPECT_EQ(pins->unpinned[0].controller.host, "ctl-a.example");
  EXPECT_EQ(pins->unpinned[0].why.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(pins->unpinned[0].why.message()).find("ctl-a.example"), std::string::npos);
  // controller.json held another controller's pin: gone, so --restore no longer keeps it.
  EXPECT_FALSE(fs::exists(pinPath(dir.path())));
  EXPECT_EQ(hostsOf(readPins(dir.path())), std::vector<std::string>{"ctl-b.example:7443"});
  EXPECT_EQ(grpcTargets(pins->pins), std::vector<std::string>{"ipv4:10.77.0.3:7443"});
  // Once it resolves it takes its place.
  dns.zone["ctl-a.example"] = {"10.77.0.2"};
  pins = pinControllers({{"ctl-a.example", 7443}, {"ctl-b.example", 7443}}, dir.path(),
                        dns.resolver(), 300);
  ASSERT_TRUE(pins.ok()) << pins.status();
  EXPECT_TRUE(pins->unpinned.empty());
  EXPECT_EQ(hostsOf(readPins(dir.path())),
            (std::vector<std::string>{"ctl-a.example:7443", "ctl-b.example:7443"}));
}

TEST(ControllerPins, NoControllerPinnableFailsNamingEachAndTouchesNothing) {
  TempDir dir;
  ASSERT_TRUE(writeFileAtomic(pinPath(dir.path()),
                              serializePin({"old.example", 7443, {"10.77.0.9"}, 1}), 0600)
                  .ok());
  FakeDns down;
  auto pins = pinControllers({{"ctl-a.example", 7443}, {"ctl-b.example", 8443}}, dir.path(),
                             down.resolver(), 100);
  ASSERT_FALSE(pins.ok());
  EXPECT_EQ(pins.status().code(), absl::StatusCode::kUnavailable);
  const std::string msg(pins.status().message());
  EXPECT_NE(msg.find("no controller can be pinned"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ctl-a.example:7443"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ctl-b.example:8443"), std::string::npos) << msg;
  EXPECT_EQ(down.asked, (std::vector<std::string>{"ctl-a.example", "ctl-b.example"}));
  EXPECT_EQ(hostsOf(readPins(dir.path())), std::vector<std::string>{"old.example:7443"});
  // One controller: its own error, as before.
  auto one = pinController({"ctl-a.example", 7443}, dir.path(), down.resolver(), 100);
  EXPECT_EQ(one.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(one.status().message(), "cannot resolve controller name \"ctl-a.example\"");
}

TEST(ControllerPins, FilesBeyondTheLastControllerAreRemovedAndUnchangedPinsNotRewritten) {
  TempDir dir;
  FakeDns dns;
  dns.zone["ctl-a.example"] = {"10.77.0.2"};
  ASSERT_TRUE(pinControllers({{"ctl-a.example", 7443}, {"10.77.0.3", 7443}, {"10.77.0.4", 7443}},
                             dir.path(), dns.resolver(), 100)
                  .ok());
  ASSERT_TRUE(fs::exists(dir.path() / "controller-3.json"));
  auto pins = pinControllers({{"ctl-a.example", 7443}}, dir.path(), dns.resolver(), 200);
  ASSERT_TRUE(pins.ok()) << pins.status();
  EXPECT_EQ(pins->pins.at(0).pinned_at_unix_ms, 100);  // same addresses: same pin
  EXPECT_TRUE(fs::exists(pinPath(dir.path())));
  EXPECT_FALSE(fs::exists(dir.path() / "controller-2.json"));
  EXPECT_FALSE(fs::exists(dir.path() / "controller-3.json"));
  // New addresses: a new pin.
  dns.zone["ctl-a.example"] = {"10.77.0.5"};
  pins = pinControllers({{"ctl-a.example", 7443}}, dir.path(), dns.resolver(), 300);
  ASSERT_TRUE(pins.ok()) << pins.status();
  EXPECT_EQ(readPin(dir.path())->ips, std::vector<std::string>{"10.77.0.5"});
  EXPECT_EQ(readPin(dir.path())->pinned_at_unix_ms, 300);
}

TEST(ControllerPins, ReadPinsSkipsWhatItCannotParseAndOtherNames) {
  TempDir dir;
  ASSERT_TRUE(
      writeFileAtomic(pinPath(dir.path(), 0), serializePin({"a", 1, {"10.0.0.1"}, 1}), 0600).ok());
  ASSERT_TRUE(writeFileAtomic(pinPath(dir.path(), 1), "{not json", 0600).ok());
  ASSERT_TRUE(
      writeFileAtomic(pinPath(dir.path(), 9), serializePin({"j", 1, {"10.0.0.10"}, 1}), 0600).ok());
  ASSERT_TRUE(
      writeFileAtomic(pinPath(dir.path(), 2), serializePin({"c", 1, {"10.0.0.3"}, 1}), 0600).ok());
  for (const char* other : {"controller-1.json", "controller-03.json", "controller-x.json",
                            "controller-4.json.tmp", "controllers.json"}) {
    ASSERT_TRUE(
        writeFileAtomic(dir.path() / other, serializePin({"no", 1, {"10.0.0.99"}, 1}), 0600).ok());
  }
  std::vector<absl::Status> errors;
  auto pins = readPins(dir.path(), &errors);
  EXPECT_EQ(hostsOf(pins), (std::vector<std::string>{"a:1", "c:1", "j:1"}));  // by position
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(std::string(errors[0].message()).find("controller-2.json"), std::string::npos)
      << errors[0];
  EXPECT_TRUE(readPins(dir.path() / "missing").empty());
  // Endpoints: each once.
  EXPECT_EQ(controllerEndpoints({{"a", 1, {"10.0.0.1"}, 1}, {"b", 1, {"10.0.0.1", "10.0.0.2"}, 1}})
                .size(),
            2u);
}

}  // namespace
}  // namespace bulkhead::agent
