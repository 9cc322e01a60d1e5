// Evidence collectors: each reads one part of the host's volatile state straight from
// the kernel (/proc, sock_diag, rtnetlink, libnftables, files) and writes it as artifacts
// through an ArtifactSink. The capture engine (agent/capture/) runs every collector on its own
// thread with a time limit and a size cap, and packs what they wrote into the signed bundle.
//
// Contract for implementations:
// - Never shell out; never block forever: open files O_NONBLOCK and skip anything that is not a
//   regular file (a FIFO named .bash_history must not hang the capture); check
//   sink.stopped() in every loop and return promptly once it is true.
// - One bad item (a pid that exited, a file denied) is a sink.warn(), not a failure; return an
//   error status only when the collector as a whole could not run (partial output is kept).
// - Past its time limit a collector's thread may be abandoned: touch only `ctx` and `sink`
//   (both outlive the thread), no globals, no references to the caller's stack.
// - Records are JSON objects, one per line, with the field names listed in evidence/README.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::agent::collect {

inline constexpr uint64_t kMiB = 1024 * 1024;

class FdTable;  // fd_table.h

struct CollectContext {
  std::string capture_id;
  std::string host_id;
  std::string hostname;
  std::string agent_version;
  std::string requested_by;
  std::string reason;
  int64_t requested_at_unix_ms = 0;
  // Controller clock when the command was sent (0 = unknown) and agent clock when it arrived:
  // the metadata collector records the offset (agent minus controller, one-way latency incl.).
  int64_t controller_time_unix_ms = 0;
  int64_t received_at_unix_ms = 0;
  // Where collectors read. Tests point these at fixtures; the agent uses the defaults.
  std::filesystem::path proc_root = "/proc";
  std::filesystem::path root = "/";          // file collectors read root / "etc/passwd", ...
  uint64_t max_binary_bytes = 100 * kMiB;    // per recovered executable (ArtifactSink::copy cap)
  // A capture-first kill: the processes it holds stopped for this capture (the
  // stopped_processes collector records each in full). Empty for an ordinary capture.
  std::vector<int> target_pids;
  // The open fds of every process, walked once for every collector that reads them
  // (fd_table.h). The capture engine sets a new one per capture; null when a collector runs on
  // its own (tests): it then walks for itself.
  std::shared_ptr<FdTable> fd_table;
};

// Where a collector writes. Thread-safe against the engine sealing it at the time limit; used
// by one collector thread at a time.
class ArtifactSink {
 public:
  virtual ~ArtifactSink() = default;

  // Appends `record` as one JSON line to "artifacts/<artifact>" (e.g. "processes.jsonl").
  // False once the collector's size cap or time limit is reached (nothing written): stop.
  virtual bool record(std::string_view artifact, const nlohmann::json& record) = 0;

  // Writes a whole file at `path` inside the bundle ("metadata.json",
  // "artifacts/nftables.json"). False as for record().
  virtual bool file(std::string_view path, std::string_view bytes) = 0;

  struct Copied {
    uint64_t bytes = 0;
    std::string sha256;      // hex, of the bytes written
    bool truncated = false;  // `cap` reached before end of file
  };
  // Copies up to `cap` bytes read from `fd` (from offset 0, with pread) to `path` inside the
  // bundle ("binaries/<sha256>"), hashing on the way. Recovers deleted and memfd executables
  // through /proc/PID/exe. Does not count against the size cap (binaries have their own caps);
  // an error if the time limit passed or the capture's total binary budget is spent.
  virtual absl::StatusOr<Copied> copy(std::string_view path, int fd, uint64_t cap) = 0;

  // True if `path` was already written by copy() in this capture (dedupe across processes).
  virtual bool has(std::string_view path) const = 0;

  // A problem that does not stop the collector; goes to the collection log (the first 100
  // are kept verbatim, all are counted).
  virtual void warn(std::string_view message) = 0;

  // True once the time limit passed or the capture was cancelled.
  virtual bool stopped() const = 0;
};

class Collector {
 public:
  virtual ~Collector() = default;
  // Short stable name used in the collection log and the CLI ("processes").
  virtual std::string_view name() const = 0;
  // Default time limit; a capture request may set another for every collector.
  virtual std::chrono::milliseconds timeLimit() const { return std::chrono::seconds(15); }
  // Bytes of records and files this collector may write (copy() excluded).
  virtual uint64_t sizeCap() const { return 64 * kMiB; }
  virtual absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) = 0;
};

}  // namespace bulkhead::agent::collect
