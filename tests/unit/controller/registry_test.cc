#include "controller/core/registry.h"

#include <gtest/gtest.h>

#include "tests/unit/controller/fake_clock.h"

namespace bulkhead::controller {
namespace {

using std::chrono::milliseconds;

HelloInfo hello(Labels labels = {}) {
  HelloInfo h;
  h.hostname = "web-01.lab";
  h.addresses = {"10.77.1.11/16"};
  h.labels = std::move(labels);
  h.os = "Debian 12";
  h.agent_version = "0.1.0";
  return h;
}

class RegistryTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  HostRegistry reg_{clock_, milliseconds(15000)};
};

TEST_F(RegistryTest, UnknownHostIsNotOnline) {
  EXPECT_FALSE(reg_.online("web-01"));
  EXPECT_EQ(reg_.find("web-01"), nullptr);
}

TEST_F(RegistryTest, ConnectMakesOnlineAndRecordsHello) {
  const int64_t t0 = clock_.nowUnixMs();
  uint64_t superseded = 99;
  uint64_t s = reg_.connect("web-01", hello({{"role", "web"}}), &superseded);
  EXPECT_NE(s, 0u);
  EXPECT_EQ(superseded, 0u);
  EXPECT_TRUE(reg_.online("web-01"));
  const HostInfo* h = reg_.find("web-01");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->hostname, "web-01.lab");
  EXPECT_EQ(h->labels.at("role"), "web");
  EXPECT_EQ(h->first_seen_unix_ms, t0);
  EXPECT_EQ(h->connected_since_unix_ms, t0);
}

TEST_F(RegistryTest, OfflineExactlyAfterTheHeartbeatTimeout) {
  uint64_t s = reg_.connect("web-01", hello(), nullptr);
  clock_.advance(milliseconds(10000));
  EXPECT_TRUE(reg_.touch("web-01", s));
  clock_.advance(milliseconds(15000));   // exactly the timeout since the last message
  EXPECT_TRUE(reg_.online("web-01"));
  EXPECT_TRUE(reg_.sweep().empty());
  clock_.advance(milliseconds(1));
  EXPECT_FALSE(reg_.online("web-01"));   // stale even before the sweep runs
  auto expired = reg_.sweep();
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].host_id, "web-01");
  EXPECT_EQ(expired[0].session, s);
  EXPECT_EQ(reg_.find("web-01")->connected_since_unix_ms, 0);
  // The expired session cannot bring the host back; a new connection can.
  EXPECT_FALSE(reg_.touch("web-01", s));
  EXPECT_FALSE(reg_.online("web-01"));
  EXPECT_TRUE(reg_.sweep().empty());
  uint64_t s2 = reg_.connect("web-01", hello(), nullptr);
  EXPECT_NE(s2, s);
  EXPECT_TRUE(reg_.online("web-01"));
}

TEST_F(RegistryTest, SecondConnectionSupersedesTheFirst) {
  uint64_t s1 = reg_.connect("web-01", hello(), nullptr);
  uint64_t superseded = 0;
  uint64_t s2 = reg_.connect("web-01", hello(), &superseded);
  EXPECT_EQ(superseded, s1);
  EXPECT_FALSE(reg_.touch("web-01", s1));
  reg_.disconnect("web-01", s1);   // the old stream ending must not take the host offline
  EXPECT_TRUE(reg_.online("web-01"));
  reg_.disconnect("web-01", s2);
  EXPECT_FALSE(reg_.online("web-01"));
}

TEST_F(RegistryTest, HeartbeatsRefreshEnforcedState) {
  uint64_t s = reg_.connect("web-01", hello(), nullptr);
  clock_.advance(milliseconds(5000));
  EXPECT_TRUE(reg_.setEnforced("web-01", s, 7, "abc"));
  EXPECT_EQ(reg_.find("web-01")->enforced_generation, 7u);
  EXPECT_EQ(reg_.find("web-01")->last_seen_unix_ms, clock_.nowUnixMs());
  bulkhead::v1::StateReport r;
  r.set_generation(8);
  r.set_enforced_generation(8);
  r.set_ok(true);
  r.set_ruleset_hash("def");
  EXPECT_TRUE(reg_.setReport("web-01", s, r));
  EXPECT_EQ(reg_.find("web-01")->enforced_generation, 8u);
  EXPECT_EQ(reg_.find("web-01")->last_report.ruleset_hash(), "def");
}

TEST_F(RegistryTest, RestoredHostsAreOffline) {
  HostInfo h;
  h.host_id = "db-01";
  h.labels = {{"role", "db"}};
  h.last_seen_unix_ms = clock_.nowUnixMs();
  h.connected_since_unix_ms = clock_.nowUnixMs();   // as it was before the restart
  reg_.restore({h});
  EXPECT_FALSE(reg_.online("db-01"));
  ASSERT_NE(reg_.find("db-01"), nullptr);
  EXPECT_EQ(reg_.find("db-01")->connected_since_unix_ms, 0);
}

TEST_F(RegistryTest, SelectorFiltersAndOrdersById) {
  reg_.connect("web-02", hello({{"role", "web"}, {"env", "prod"}}), nullptr);
  reg_.connect("db-01", hello({{"role", "db"}, {"env", "prod"}}), nullptr);
  reg_.connect("web-01", hello({{"role", "web"}, {"env", "test"}}), nullptr);
  auto ids = [](const std::vector<const HostInfo*>& hs) {
    std::vector<std::string> out;
    for (auto* h : hs) out.push_back(h->host_id);
    return out;
  };
  EXPECT_EQ(ids(reg_.list()), (std::vector<std::string>{"db-01", "web-01", "web-02"}));
  EXPECT_EQ(ids(reg_.list({{"role", "web"}})), (std::vector<std::string>{"web-01", "web-02"}));
  EXPECT_EQ(ids(reg_.list({{"role", "web"}, {"env", "prod"}})),
            (std::vector<std::string>{"web-02"}));
  EXPECT_TRUE(reg_.list({{"role", "cache"}}).empty());
  EXPECT_TRUE(reg_.list({{"nolabel", "x"}}).empty());
}

TEST_F(RegistryTest, DirtyRowsAndTamperEventsAreTakenOnce) {
  uint64_t s = reg_.connect("web-01", hello(), nullptr);
  bulkhead::v1::TamperEvent ev;
  ev.set_what("table deleted");
  EXPECT_TRUE(reg_.addTamper("web-01", s, ev));
  auto d = reg_.takeDirty();
  ASSERT_EQ(d.hosts.size(), 1u);
  ASSERT_EQ(d.tamper.size(), 1u);
  EXPECT_EQ(d.tamper[0].event.what(), "table deleted");
  auto again = reg_.takeDirty();
  EXPECT_TRUE(again.hosts.empty());
  EXPECT_TRUE(again.tamper.empty());
  reg_.restoreDirty(std::move(d));   // a failed flush puts them back
  auto retry = reg_.takeDirty();
  EXPECT_EQ(retry.hosts.size(), 1u);
  EXPECT_EQ(retry.tamper.size(), 1u);
}

TEST_F(RegistryTest, KeepsTheLastTamperEventsOnly) {
  uint64_t s = reg_.connect("web-01", hello(), nullptr);
  for (int i = 0; i < 60; ++i) {
    bulkhead::v1::TamperEvent ev;
    ev.set_at_unix_ms(i);
    reg_.addTamper("web-01", s, ev);
  }
  const auto& evs = reg_.find("web-01")->tamper_events;
  ASSERT_EQ(evs.size(), kMaxTamperEvents);
  EXPECT_EQ(evs.front().at_unix_ms(), 10);
  EXPECT_EQ(evs.back().at_unix_ms(), 59);
}

}  // namespace
}  // namespace bulkhead::controller
