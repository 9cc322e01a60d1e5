// Per-command argument parsing on top of Boost.Program_options.
#pragma once

#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "cli/cli.h"

namespace bulkhead::cli {

// Parses a command's own arguments. Returns false after printing one clear line on io.err
// (unknown option, missing value, a required option absent); prints help on io.out and
// returns false with *help_shown = true for --help. Every command parses its arguments here,
// so that describeCommand (io.described_flags) sees its options.
bool parseCommandArgs(const std::string& command, const std::vector<std::string>& args,
                      boost::program_options::options_description& options,
                      const boost::program_options::positional_options_description& positional,
                      boost::program_options::variables_map& vm, Io& io, bool* help_shown);

}  // namespace bulkhead::cli
