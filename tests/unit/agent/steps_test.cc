// runSteps: steps in order, teardown in reverse, and teardown also when a step stops early.
#include "agent/daemon/steps.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bulkhead::agent {
namespace {

using ::testing::ElementsAre;

// A step that logs itself, registers a teardown that logs "undo <name>", and ends with `out`.
Step logged(std::vector<std::string>* log, const std::string& name,
            StepOutcome out = StepOutcome::next()) {
  return Step{name, [log, name, out](Teardown& t) {
                log->emplace_back(name);
                t.add(name, [log, name] { log->emplace_back("undo " + name); });
                return out;
              }};
}

TEST(RunSteps, RunsEveryStepThenTearsDownInReverse) {
  std::vector<std::string> log;
  int code = runSteps({logged(&log, "a"), logged(&log, "b"), logged(&log, "c")}, 7);
  EXPECT_EQ(code, 7);
  EXPECT_THAT(log, ElementsAre("a", "b", "c", "undo c", "undo b", "undo a"));
}

TEST(RunSteps, AStepThatStopsSkipsTheRestAndStillTearsDownWhatWasSetUp) {
  std::vector<std::string> log;
  int code =
      runSteps({logged(&log, "a"), logged(&log, "b", StepOutcome::exit(2)), logged(&log, "c")}, 0);
  EXPECT_EQ(code, 2);
  EXPECT_THAT(log, ElementsAre("a", "b", "undo b", "undo a"));
}

TEST(RunSteps, AStepMayStopBeforeRegisteringAnything) {
  std::vector<std::string> log;
  Step fails{"fails", [&log](Teardown&) {
               log.emplace_back("fails");
               return StepOutcome::exit(1);
             }};
  EXPECT_EQ(runSteps({logged(&log, "a"), fails}, 0), 1);
  EXPECT_THAT(log, ElementsAre("a", "fails", "undo a"));
}

TEST(Teardown, RunsOnceEvenWhenRunTwiceAndOnDestruction) {
  std::vector<std::string> log;
  {
    Teardown t;
    t.add("x", [&log] { log.emplace_back("x"); });
    t.add("y", [&log] { log.emplace_back("y"); });
    t.run();
    t.run();
    t.add("z", [&log] { log.emplace_back("z"); });
  }
  EXPECT_THAT(log, ElementsAre("y", "x", "z"));
}

}  // namespace
}  // namespace bulkhead::agent
