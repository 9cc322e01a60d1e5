#include "agent/daemon/steps.h"

#include <spdlog/spdlog.h>

namespace bulkhead::agent {

void Teardown::add(std::string name, std::function<void()> fn) {
  actions_.emplace_back(std::move(name), std::move(fn));
}

void Teardown::run() {
  while (!actions_.empty()) {
    auto [name, fn] = std::move(actions_.back());
    actions_.pop_back();
    spdlog::debug("teardown: {}", name);
    fn();
  }
}

int runSteps(const std::vector<Step>& steps, int done) {
  Teardown teardown;
  int code = done;
  for (const Step& step : steps) {
    spdlog::debug("start-up step: {}", step.name);
    StepOutcome outcome = step.run(teardown);
    if (outcome.stops()) {
      code = outcome.exitCode();
      spdlog::debug("start-up step {} ends start-up (exit status {})", step.name, code);
      break;
    }
  }
  teardown.run();
  return code;
}

}  // namespace bulkhead::agent
