// The capture engine's ArtifactSink: one per collector, writing to files under the capture's
// work directory so a capture never holds its artifacts in memory. Private to agent/capture/.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "agent/collect/collector.h"

namespace bulkhead::agent::capture {

// State shared by every sink of one capture: recovered binaries (deduplicated across
// collectors) and their total budget. Held by shared_ptr: an abandoned collector thread may
// still use it after the capture finished.
class SharedCopies {
 public:
  SharedCopies(std::filesystem::path dir, uint64_t budget)
      : dir_(std::move(dir)), left_(budget), budget_(budget) {}
  // Completed copies in the order they completed: {path inside the bundle, file on disk}.
  std::vector<std::pair<std::string, std::filesystem::path>> completed() const;
  bool has(const std::string& path) const;

 private:
  friend class FileSink;
  const std::filesystem::path dir_;
  mutable std::mutex mu_;
  uint64_t left_;
  const uint64_t budget_;
  uint64_t next_id_ = 0;
  std::set<std::string> busy_;  // being copied or copied
  std::set<std::string> done_;
  std::vector<std::pair<std::string, std::filesystem::path>> completed_;
};

// What a collector wrote, as of seal().
struct SinkReport {
  uint64_t bytes = 0;  // records and files (copies excluded)
  uint64_t records = 0;
  uint64_t warnings = 0;
  std::vector<std::string> warning_samples;  // the first kMaxWarningSamples
  bool truncated = false;                    // the size cap refused a write
  std::string cap_error;                     // "size cap of N bytes reached" if truncated
  // Files in the order they were first written: {path inside the bundle, file on disk}.
  std::vector<std::pair<std::string, std::filesystem::path>> outputs;
};

inline constexpr size_t kMaxWarningSamples = 100;

// Writes records and files under `dir` (records buffered and appended to
// dir/<bundle path>), copies to the shared copies directory. Thread-safe; after seal() every
// call is refused and no file is created or written any more.
class FileSink final : public collect::ArtifactSink {
 public:
  FileSink(std::shared_ptr<SharedCopies> copies, std::string collector, std::filesystem::path dir,
           uint64_t size_cap, std::shared_ptr<const std::atomic<bool>> cancel);
  ~FileSink() override;

  // The time limit: stopped() is true from `deadline` on.
  void setDeadline(std::chrono::steady_clock::time_point deadline);
  // Flushes and closes every file and refuses all later writes; returns what was written.
  // Idempotent (later calls return the same report).
  SinkReport seal();

  bool record(std::string_view artifact, const nlohmann::json& record) override;
  bool file(std::string_view path, std::string_view bytes) override;
  absl::StatusOr<Copied> copy(std::string_view path, int fd, uint64_t cap) override;
  bool has(std::string_view path) const override;
  void warn(std::string_view message) override;
  bool stopped() const override;

 private:
  struct Output {
    std::filesystem::path disk;
    int fd = -1;
    std::string buffer;  // records not yet written
  };
  bool stoppedLocked() const;
  // Accounts `bytes` against the size cap; false (and truncated) if they do not fit.
  bool admitLocked(uint64_t bytes);
  // The output for `path`, created on first use; nullptr (with a warning) on failure.
  Output* outputLocked(const std::string& path);
  bool flushLocked(Output& out);
  void warnLocked(std::string message);

  const std::shared_ptr<SharedCopies> copies_;
  const std::string collector_;
  const std::filesystem::path dir_;
  const uint64_t size_cap_;
  const std::shared_ptr<const std::atomic<bool>> cancel_;

  mutable std::mutex mu_;
  bool sealed_ = false;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  SinkReport report_;
  std::map<std::string, Output> outputs_;
};

}  // namespace bulkhead::agent::capture
