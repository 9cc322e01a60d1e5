// The evidence bundle (format "bulkhead-evidence/1", described in evidence/README.md): a
// tar.gz any responder opens with `tar xzf`, one directory "<capture_id>/" holding the
// artifacts, recovered binaries, the collection log, a manifest of SHA-256 per file, the
// agent's signature of the manifest and the agent's certificate.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "evidence/signing.h"

namespace bulkhead::evidence {

inline constexpr std::string_view kFormat = "bulkhead-evidence/1";

// True if `path` can name a member below the top directory: relative, no empty, "." or ".."
// component.
bool isCleanMemberPath(std::string_view path);
// manifest.json, manifest.sig and agent.crt: written by BundleWriter::finish() only.
bool isReservedMemberPath(std::string_view path);

// Writes a bundle to a file, streaming: each added file is hashed and written as it comes.
class BundleWriter {
 public:
  // `dir` is the bundle's top directory ("<capture_id>"); `manifest_fields` are copied into
  // manifest.json (capture_id, host_id, hostname, requested_by, reason, times, clock offset,
  // agent_version...); "format" and "files" are added by finish().
  static absl::StatusOr<std::unique_ptr<BundleWriter>> create(const std::filesystem::path& out,
                                                              std::string dir,
                                                              nlohmann::json manifest_fields);
  virtual ~BundleWriter() = default;
  // `path` is relative to the top directory ("artifacts/processes.jsonl").
  virtual absl::Status addBytes(std::string_view path, std::string_view bytes) = 0;
  // Copies a whole file from disk into the bundle at `path`, streaming in 1 MiB blocks (the
  // file is never held in memory). The file must not shrink while it is copied.
  virtual absl::Status addFile(std::string_view path, const std::filesystem::path& from) = 0;
  // Calls `progress(bytes)` with the member bytes added so far, about every `every_bytes` and
  // after each member. Default: no progress reports.
  virtual void setProgress(std::function<void(uint64_t bytes)> progress, uint64_t every_bytes) {
    (void)progress;
    (void)every_bytes;
  }
  struct Result {
    std::string sha256;  // hex, of the whole .tar.gz
    uint64_t size = 0;
    std::string manifest_sha256;  // hex, of manifest.json
    uint32_t files = 0;           // files in the manifest
  };
  // Writes manifest.json, manifest.sig (signer.sign(manifest.json)) and agent.crt, closes the
  // archive and fsyncs it. Paths must be clean relative paths, each added once; manifest.json,
  // manifest.sig and agent.crt are reserved. After any failure every call fails with it. A
  // writer destroyed before finish() succeeded removes its partial file.
  virtual absl::StatusOr<Result> finish(const Signer& signer) = 0;
};

struct Problem {
  // Path inside the bundle ("manifest.sig": the signature, "agent.crt": the signer), or the
  // bundle file's own path (whole-file hash, corrupt gzip/tar stream).
  std::string file;
  std::string problem;
};

// What verifyBundle() keeps of an untrusted bundle, whatever its size: at most kMaxProblems
// problems (then one more saying how many were left out), each path and text clipped and
// escaped (evidence/json_read.h boundedText); at most kMaxMembers archive entries read (the
// rest is a problem, not checked); at most kMaxCollectorErrors collector errors (then one line
// saying how many more).
inline constexpr size_t kMaxProblems = 100;
inline constexpr size_t kMaxMembers = 50000;
inline constexpr size_t kMaxCollectorErrors = 64;

struct Verification {
  bool ok() const { return problems.empty(); }
  std::vector<Problem> problems;
  size_t problems_omitted = 0;  // problems found beyond kMaxProblems, not listed
  uint32_t files_checked = 0;
  nlohmann::json manifest;  // parsed manifest.json (null if unreadable)
  std::string manifest_sha256;
  bool signature_ok = false;  // signature valid and signer certificate accepted
  // "collector: status: error" for each collection-log.jsonl line whose status is not "ok".
  std::vector<std::string> collector_errors;
};

struct VerifyOptions {
  std::string expected_sha256;   // hex SHA-256 of the whole file (the evidence id); empty: skip
  std::string ca_pem;            // fleet CA; empty: the signer's certificate is not checked
  std::string expected_host_id;  // empty: not checked
};

// Reads the bundle once: recomputes every member's SHA-256 against the manifest (missing,
// extra and changed files are problems naming the file), the whole file's SHA-256, the
// signature and the signer. Only an unreadable file is an error status; corruption (a bad
// gzip stream) is a problem naming the bundle file.
absl::StatusOr<Verification> verifyBundle(const std::filesystem::path& bundle,
                                          const VerifyOptions& options);

// The content of one member (path relative to the top directory); NotFound if absent.
absl::StatusOr<std::string> readMember(const std::filesystem::path& bundle, std::string_view path,
                                       uint64_t max_bytes = 256 << 20);

// The contents of the members named in `paths` that are present, read in one pass over the
// bundle; DataLoss if the stream is corrupt, ResourceExhausted if one is over `max_bytes`.
absl::StatusOr<std::map<std::string, std::string>> readMembers(
    const std::filesystem::path& bundle, const std::vector<std::string>& paths,
    uint64_t max_bytes = 256 << 20);

}  // namespace bulkhead::evidence
