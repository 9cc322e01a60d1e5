#include "agent/daemon/steps.h"

namespace bulkhead::agent {

void Teardown::add(std::string name, std::function<void()> fn) {
  actions_.emplace_back(std::move(name), std::move(fn));
}

void Teardown::run() {
  while (!actions_.empty()) {
    std::function<void()> fn = std::move(actions_.back().second);
    actions_.pop_back();
    fn();
  }
}

int runSteps(const std::vector<Step>& steps, int done) {
  Teardown teardown;
  for (const Step& step : steps) {
    StepOutcome outcome = step.run(teardown);
    if (outcome.stops()) {
      teardown.run();
      return outcome.exitCode();
    }
  }
  teardown.run();
  return done;
}

}  // namespace bulkhead::agent
