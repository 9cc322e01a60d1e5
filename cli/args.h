// Per-command argument parsing on top of Boost.Program_options.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace bulkhead::cli {

// Parses a command's own arguments. Returns false after printing one clear line on `err`
// (unknown option, missing value, a required option absent); prints help on `out` and
// returns false with *help_shown = true for --help.
bool parseCommandArgs(const std::string& command, const std::vector<std::string>& args,
                      boost::program_options::options_description& options,
                      const boost::program_options::positional_options_description& positional,
                      boost::program_options::variables_map& vm, std::ostream& out,
                      std::ostream& err, bool* help_shown);

}  // namespace bulkhead::cli
