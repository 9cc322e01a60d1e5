// Start-up as a list of named steps with teardown that always runs. Each step either lets
// start-up go on or ends it with an exit status; what a step sets up it undoes by registering
// teardown actions, which run last-registered first once start-up ends, however it ends (all
// steps done, or a step stopping early).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bulkhead::agent {

// What a step decided: go on with the next step, or stop with an exit status.
class StepOutcome {
 public:
  static StepOutcome next() { return StepOutcome(std::nullopt); }
  static StepOutcome exit(int code) { return StepOutcome(code); }
  bool stops() const { return exit_code_.has_value(); }
  int exitCode() const { return exit_code_.value_or(0); }

 private:
  explicit StepOutcome(std::optional<int> code) : exit_code_(code) {}
  std::optional<int> exit_code_;
};

// Teardown actions, run last-registered first. Not thread-safe: used by the start-up thread.
class Teardown {
 public:
  Teardown() = default;
  ~Teardown() { run(); }
  Teardown(const Teardown&) = delete;
  Teardown& operator=(const Teardown&) = delete;

  // Registers `fn` (named for readers of the start-up code) to run at teardown.
  void add(std::string name, std::function<void()> fn);
  // Runs every registered action, last registered first, once each; later calls run only
  // what was registered since.
  void run();

 private:
  std::vector<std::pair<std::string, std::function<void()>>> actions_;
};

struct Step {
  std::string name;
  // Runs the step; registers on `teardown` what undoes it.
  std::function<StepOutcome(Teardown& teardown)> run;
};

// Runs `steps` in order until one stops (the later ones do not run), then the teardown. Logs
// nothing: a step that stops start-up says why itself (one line on stderr for bad input).
// Returns the exit status of the step that stopped, or `done` when every step went on.
int runSteps(const std::vector<Step>& steps, int done);

}  // namespace bulkhead::agent
