// The exemption DNS names cache: names of the library in force resolved on its own thread,
// those of a reloaded library picked up, the last good answer kept when a refresh fails.
#include "controller/service/name_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include "tests/unit/controller/fake_clock.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// Answers NAME with 10.77.2.N where N is how many times it was asked, or fails when told to.
class CountingResolver final : public NameResolver {
 public:
  absl::StatusOr<std::vector<std::string>> resolve(const std::string& name) override {
    if (fail) return absl::UnavailableError("SERVFAIL");
    const int n = ++calls;
    (void)name;
    return std::vector<std::string>{"10.77.2." + std::to_string(n)};
  }
  std::atomic<bool> fail{false};
  std::atomic<int> calls{0};
};

template <typename Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 500; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return pred();
}

void writeSet(const fs::path& dir, const std::string& set, const std::string& remote) {
  std::ofstream(dir / (set + ".yaml"))
      << "name: " << set << "\ndescription: d\nrules:\n"
      << "  - direction: out\n    proto: tcp\n    remote: " << remote << "\n    port: 443\n";
}

class NameCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-names-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
  FakeClock clock_;
  CountingResolver resolver_;
};

TEST_F(NameCacheTest, NamesOfAReloadedLibraryAreResolvedAndDroppedOnesForgotten) {
  writeSet(dir_, "api", "api.lab");
  writeSet(dir_, "literal", "10.77.0.9/32");
  Policies policies(dir_.string());
  ASSERT_TRUE(policies.reload().ok());
  EXPECT_EQ(namesIn(*policies.current()), std::vector<std::string>{"api.lab"});
  NameCache cache(clock_, policies, resolver_,
                  {.refresh = std::chrono::hours(1), .poll = milliseconds(10)});
  ASSERT_TRUE(eventually(
      [&] { return cache.entry("api.lab") && !cache.entry("api.lab")->addresses.empty(); }));
  EXPECT_EQ(cache.entry("api.lab")->resolved_at_unix_ms, clock_.nowUnixMs());

  fs::remove(dir_ / "api.yaml");
  writeSet(dir_, "metrics", "metrics.lab");
  ASSERT_TRUE(policies.reload().ok());
  ASSERT_TRUE(eventually([&] {
    return cache.entry("metrics.lab") && !cache.entry("metrics.lab")->addresses.empty();
  }));
  EXPECT_FALSE(cache.entry("api.lab").has_value());
  auto lookup = cache.lookup();
  EXPECT_TRUE(lookup.resolve("metrics.lab").ok());
  EXPECT_FALSE(lookup.resolve("api.lab").ok());
  EXPECT_TRUE(lookup.warnings().empty());
}

TEST_F(NameCacheTest, AFailedRefreshKeepsTheLastGoodAnswerAndALookupWarns) {
  writeSet(dir_, "api", "api.lab");
  Policies policies(dir_.string());
  ASSERT_TRUE(policies.reload().ok());
  NameCache cache(clock_, policies, resolver_,
                  {.refresh = milliseconds(20), .poll = milliseconds(5)});
  ASSERT_TRUE(eventually([&] { return resolver_.calls >= 2; }));  // refreshed at least once
  resolver_.fail = true;
  ASSERT_TRUE(eventually([&] { return !cache.entry("api.lab")->last_error.empty(); }));
  const auto e = *cache.entry("api.lab");
  ASSERT_EQ(e.addresses.size(), 1u);
  EXPECT_EQ(e.last_error, "SERVFAIL");
  auto lookup = cache.lookup();
  auto answer = lookup.resolve("api.lab");
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(*answer, e.addresses);
  ASSERT_EQ(lookup.warnings().size(), 1u);
  EXPECT_NE(lookup.warnings()[0].find("2023-11-14T22:13:20Z"), std::string::npos)
      << lookup.warnings()[0];
  EXPECT_NE(lookup.warnings()[0].find("SERVFAIL"), std::string::npos) << lookup.warnings()[0];
  ASSERT_TRUE(lookup.resolve("api.lab").ok());  // a second set using the name: one warning
  EXPECT_EQ(lookup.warnings().size(), 1u);
  // Answers again once the resolver recovers; no warning then.
  resolver_.fail = false;
  ASSERT_TRUE(eventually([&] { return cache.entry("api.lab")->last_error.empty(); }));
  auto fresh = cache.lookup();
  EXPECT_TRUE(fresh.resolve("api.lab").ok());
  EXPECT_TRUE(fresh.warnings().empty());
}

// Blocks every resolution until released; counts them.
class BlockingResolver final : public NameResolver {
 public:
  absl::StatusOr<std::vector<std::string>> resolve(const std::string& name) override {
    std::unique_lock lock(mu);
    ++calls;
    cv.notify_all();
    cv.wait(lock, [this] { return released; });
    (void)name;
    return std::vector<std::string>{"10.77.2.1"};
  }
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;  // GUARDED_BY(mu)
  int calls = 0;          // GUARDED_BY(mu)
};

TEST_F(NameCacheTest, DestructionWaitsForTheResolutionInProgressAndStartsNoOther) {
  writeSet(dir_, "a", "a.lab");
  writeSet(dir_, "b", "b.lab");
  writeSet(dir_, "c", "c.lab");
  Policies policies(dir_.string());
  ASSERT_TRUE(policies.reload().ok());
  BlockingResolver resolver;
  auto cache = std::make_unique<NameCache>(
      clock_, policies, resolver,
      NameCacheOptions{.refresh = std::chrono::hours(1), .poll = milliseconds(1)});
  {
    std::unique_lock lock(resolver.mu);
    ASSERT_TRUE(
        resolver.cv.wait_for(lock, std::chrono::seconds(10), [&] { return resolver.calls == 1; }));
  }
  std::atomic<bool> destroying{false};
  std::atomic<bool> destroyed{false};
  std::thread destroyer([&] {
    destroying = true;
    cache.reset();
    destroyed = true;
  });
  // Released once the destroyer is inside the destructor (300 ms after its last step before
  // it): released earlier, "b.lab" could start resolving before destruction begins.
  while (!destroying.load()) std::this_thread::sleep_for(milliseconds(1));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(destroyed.load());  // "a.lab" is still being resolved
  {
    std::lock_guard lock(resolver.mu);
    resolver.released = true;
  }
  resolver.cv.notify_all();
  destroyer.join();
  std::lock_guard lock(resolver.mu);
  EXPECT_EQ(resolver.calls, 1);  // neither "b.lab" nor "c.lab"
}

}  // namespace
}  // namespace bulkhead::controller
