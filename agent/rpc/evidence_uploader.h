// Uploads spooled evidence bundles to the controller: AgentChannel.UploadEvidence, a
// client-streaming call on a channel of its own, so a 100 MiB upload never shares the control
// stream's TCP connection and never delays an isolate command.
//
// Blocking (sync API): call from a worker thread, never from a gRPC callback or the reconcile
// worker. One upload at a time per uploader.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/rpc/controller_session.h"
#include "bulkhead/v1/agent.grpc.pb.h"

namespace bulkhead::agent {

// Channel argument that keeps the evidence channel's connection apart from the session's
// (gRPC shares a subchannel between channels whose arguments are identical).
inline constexpr char kChannelPurposeArg[] = "bulkhead.purpose";

// The session's channel arguments plus "bulkhead.purpose"="evidence".
grpc::ChannelArguments evidenceChannelArguments(const SessionOptions& options);

// Deadline of one upload of `size` bytes: 60 s plus 1 s per MiB (started).
std::chrono::seconds uploadDeadline(uint64_t size);

struct EvidenceUploaderOptions {
  // Targets, credentials and certificate name: the session's.
  SessionOptions session;
  size_t chunk_bytes = 1024 * 1024;  // at most 1 MiB (the proto's contract)
  uint64_t progress_every_bytes = 4 * 1024 * 1024;
};

class EvidenceUploader {
 public:
  // (bytes sent, total): after every `progress_every_bytes` and once at the end.
  using Progress = std::function<void(uint64_t done, uint64_t total)>;

  explicit EvidenceUploader(EvidenceUploaderOptions options);

  // Streams `header`, then the bytes of `bundle` (which must be header.size() bytes long) and
  // returns the controller's receipt. The targets are tried in turn, starting with the last
  // one that worked, while the controller is unreachable (UNAVAILABLE); any other failure is
  // returned at once. Errors name what failed ("UNAVAILABLE: ...", "cannot read ...").
  absl::StatusOr<v1::EvidenceReceipt> upload(const std::filesystem::path& bundle,
                                             const v1::EvidenceHeader& header,
                                             const Progress& progress);

  // Cancels the upload in flight, if any, and makes every later upload fail at once
  // (shutdown). Thread-safe.
  void cancel();

 private:
  absl::StatusOr<v1::EvidenceReceipt> uploadOnce(size_t target, const std::filesystem::path& bundle,
                                                 const v1::EvidenceHeader& header,
                                                 const Progress& progress, bool* unavailable);

  EvidenceUploaderOptions options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;  // one per target, made lazily
  size_t current_ = 0;                                    // target that worked last
  std::mutex mu_;
  bool cancelled_ = false;                    // GUARDED_BY(mu_)
  grpc::ClientContext* in_flight_ = nullptr;  // GUARDED_BY(mu_)
};

}  // namespace bulkhead::agent
