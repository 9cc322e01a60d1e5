#include <iostream>
#include <string>
#include <vector>

#include <grpc/support/log.h>

#include "cli/cli.h"
#include "common/runtime.h"

namespace {
// gRPC's own log lines would break the one-clear-line contract; errors reach the user through
// the RPC status instead.
void discardGrpcLog(gpr_log_func_args* /*args*/) {}
}  // namespace

int main(int argc, char** argv) {
  bulkhead::tuneProcessRuntime();
  gpr_set_log_function(discardGrpcLog);
  std::vector<std::string> args(argv + 1, argv + argc);
  bulkhead::cli::Io io{std::cout, std::cerr};
  return bulkhead::cli::runCli(args, io);
}
