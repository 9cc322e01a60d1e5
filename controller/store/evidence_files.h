// The evidence files under <data-dir>/evidence/: bundles being received are written to
// incoming/<capture_id>.<random>.part, then fsynced and renamed to <id[0:2]>/<id>.tar.gz where
// id is the hex SHA-256 of the bytes (content addressed: a bundle is stored once). All methods
// block on disk I/O: call them off gRPC reactor threads, except PartFile::write (one chunk).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "evidence/hash.h"

namespace bulkhead::controller {

// A file being received, with the running SHA-256 of what was written. Removed on destruction
// unless committed.
class PartFile {
 public:
  PartFile(std::filesystem::path path, int fd);
  ~PartFile();
  PartFile(const PartFile&) = delete;
  PartFile& operator=(const PartFile&) = delete;

  absl::Status write(std::string_view data);
  uint64_t size() const { return size_; }
  // Hex SHA-256 of everything written. Call once, after the last write.
  std::string finishHash();
  // fsync and close. REQUIRES: called once, before EvidenceFiles::commit.
  absl::Status syncAndClose();
  const std::filesystem::path& path() const { return path_; }
  // Unlinks the file (idempotent); the destructor does it unless the file was committed.
  void remove();
  void markCommitted() { committed_ = true; }

 private:
  std::filesystem::path path_;
  int fd_;
  uint64_t size_ = 0;
  evidence::Sha256 sha_;
  bool committed_ = false;
};

class EvidenceFiles {
 public:
  // `root` is <data-dir>/evidence.
  explicit EvidenceFiles(std::filesystem::path root) : root_(std::move(root)) {}

  // Creates root/ and root/incoming/ and removes .part files left by an earlier run (the
  // agents keep their copies until a receipt, so they upload them again).
  absl::Status init();
  // A new, empty part file for `capture_id` (any characters outside [A-Za-z0-9._-] replaced).
  absl::StatusOr<std::unique_ptr<PartFile>> createPart(const std::string& capture_id);
  // Moves a synced part file to its content address and fsyncs the directory. If a file is
  // already stored there the part is removed and *already_there is true. `id` must be the part's
  // SHA-256 (64 lowercase hex digits).
  absl::Status commit(PartFile& part, const std::string& id, bool* already_there);
  // "ab/ab12....tar.gz": the path of bundle `id` relative to root (as the store records it).
  static std::string relativePath(const std::string& id);
  // Where bundle `id` is stored, derived from the id alone (never from a stored path);
  // InvalidArgument unless `id` is 64 lowercase hex digits.
  absl::StatusOr<std::filesystem::path> bundlePath(const std::string& id) const;
  // Bytes an unprivileged writer may still use on root's file system (statvfs f_bavail).
  absl::StatusOr<uint64_t> availableBytes() const;
  std::filesystem::path absolute(const std::string& relative) const { return root_ / relative; }
  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
};

// Hex SHA-256 of a whole file, read in 1 MiB blocks.
absl::StatusOr<std::string> sha256OfFile(const std::filesystem::path& path);

}  // namespace bulkhead::controller
