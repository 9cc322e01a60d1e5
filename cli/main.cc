#include <iostream>
#include <string>
#include <vector>

#include "cli/cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bulkhead::cli::Io io{std::cout, std::cerr};
  return bulkhead::cli::runCli(args, io);
}
