// Scheduler (common/scheduler.h): posted work runs in order on its one thread; stop() runs
// what is due and drops what is not; nothing is accepted after stop(); tasks can tell that
// stop() has begun.
#include "common/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace bulkhead {
namespace {

using ::testing::ElementsAre;

TEST(Scheduler, PostedWorkRunsInOrderOnOneThread) {
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::thread::id> threads;
  {
    Scheduler s("test-sched");
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(s.post([&, i] {
        std::lock_guard lock(mu);
        order.push_back(i);
        threads.push_back(std::this_thread::get_id());
      }));
    }
    s.stop();
  }
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3, 4));
  for (auto id : threads) EXPECT_EQ(id, threads.front());
  EXPECT_NE(threads.front(), std::this_thread::get_id());
}

TEST(Scheduler, StopDropsWorkNotYetDueAndRefusesNewWork) {
  Scheduler s("test-sched");
  bool late_ran = false;
  ASSERT_TRUE(s.after(std::chrono::hours(1), [&] { late_ran = true; }));
  s.stop();
  EXPECT_FALSE(late_ran);
  EXPECT_FALSE(s.post([] {}));
}

TEST(Scheduler, TasksSeeStoppingOnceStopBegins) {
  Scheduler s("test-sched");
  EXPECT_FALSE(s.stopping());
  std::promise<void> started;
  bool running_saw_stop = false;
  bool due_saw_stop = false;
  // The first task runs until stop() begins; the second is due by then, so it still runs.
  ASSERT_TRUE(s.post([&] {
    started.set_value();
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!s.stopping() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    running_saw_stop = s.stopping();
  }));
  ASSERT_TRUE(s.post([&] { due_saw_stop = s.stopping(); }));
  started.get_future().wait();
  s.stop();
  EXPECT_TRUE(running_saw_stop);
  EXPECT_TRUE(due_saw_stop);
  EXPECT_TRUE(s.stopping());
}

TEST(Scheduler, ATaskThatThrowsDoesNotStopTheOthers) {
  Scheduler s("test-sched");
  std::promise<void> ran;
  ASSERT_TRUE(s.post([] { throw std::runtime_error("boom"); }));
  ASSERT_TRUE(s.post([&] { ran.set_value(); }));
  EXPECT_EQ(ran.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
}

}  // namespace
}  // namespace bulkhead
