// Bash completion scripts generated from the programs' own option descriptions, so the
// completion offers exactly the commands and flags the program parses.
#pragma once

#include <boost/program_options/options_description.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace bulkhead {

struct ShellFlag {
  std::string name;  // "--state-dir": the long form (short aliases are not offered)
  bool takes_value = false;
};

struct ShellCommand {
  std::string name;  // its words joined by one space: "pki init", "backup"
  std::vector<ShellFlag> flags;
};

struct ShellCompletion {
  std::string program;           // the command name completed: "bulkhead-agent"
  std::vector<ShellFlag> flags;  // the flags before (or without) a command
  std::vector<ShellCommand> commands;
};

// The long flags of `options`, in their order.
std::vector<ShellFlag> shellFlagsOf(const boost::program_options::options_description& options);

// A bash script defining the completion function bashCompletionFunction(program) and
// registering it with `complete` for `program`. It completes, at the cursor: the flags of the
// command typed so far (words starting with "-"); nothing after a flag that takes a value
// (bash then completes file names); otherwise the next word of a command ("pki" -> init,
// issue, revoke). The command typed so far is the longest run of command words after the
// program, flags and their values skipped.
std::string bashCompletionScript(const ShellCompletion& spec);

// "_bulkhead_agent" for "bulkhead-agent".
std::string bashCompletionFunction(const std::string& program);

// `PROGRAM completion bash` (`args`: what follows "completion"): prints the script on `out` and
// returns 0; prints one usage line on `err` and returns 2 for anything but "bash" (or --help,
// which prints the usage on `out` and returns 0).
int completionCommand(const std::vector<std::string>& args, const ShellCompletion& spec,
                      std::ostream& out, std::ostream& err);

}  // namespace bulkhead
