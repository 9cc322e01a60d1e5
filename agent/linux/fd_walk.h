// One walk of <proc_root>/*/fd: every open fd of every process with its link text, and the comm
// of every process holding a socket. The open_files and sockets collectors both need it; a
// capture walks once and shares the result (agent/collect/fd_table.h), since on a big host the
// readlinkat of every fd is the bulk of the cost of either collector.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"

namespace bulkhead::agent::proc {

struct OpenFd {
  int fd = 0;
  std::string target;  // the link text as readlinkat gives it: "/dev/null", "socket:[123]"
};

struct ProcessFds {
  int pid = 0;
  // Raw bytes of <pid>/comm without its newline; read only for processes holding a socket
  // (the sockets collector names owners), nullopt otherwise or when it could not be read.
  std::optional<std::string> comm;
  std::vector<OpenFd> fds;  // directory order
};

struct FdWalk {
  enum class End {
    kComplete,    // every listed process was walked
    kNoProc,      // <proc_root> could not be opened: `error` says why; nothing walked
    kStopped,     // the caller's stop condition became true
    kOverBudget,  // it took longer than `budget`
  };
  End end = End::kComplete;
  std::string error;                    // kNoProc: "cannot open /proc: <strerror>"
  std::chrono::milliseconds budget{0};  // as given to walkOpenFds
  std::vector<ProcessFds> processes;    // /proc directory order; processes without a readable
                                        // fd directory (exited, kernel threads) are left out
};

// Walks every numeric directory of `proc_root`: opens <pid>/fd, reads each link, and reads
// <pid>/comm when one of them is a socket. Each process is read relative to its open <pid>/fd
// directory, comm as fd/../comm (an exiting process fails its reads; a reused pid never answers
// them). A link that vanishes meanwhile is skipped. Checks `stop()` and the time spent against
// `budget` before each process and stops there (End says which), keeping what it walked.
FdWalk walkOpenFds(const std::filesystem::path& proc_root, std::chrono::milliseconds budget,
                   absl::FunctionRef<bool()> stop);

}  // namespace bulkhead::agent::proc
