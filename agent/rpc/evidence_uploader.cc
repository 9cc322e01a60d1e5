#include "agent/rpc/evidence_uploader.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"

namespace bulkhead::agent {
namespace fs = std::filesystem;

grpc::ChannelArguments evidenceChannelArguments(const SessionOptions& options) {
  grpc::ChannelArguments args = agentChannelArguments(options);
  args.SetString(kChannelPurposeArg, "evidence");
  return args;
}

std::chrono::seconds uploadDeadline(uint64_t size) {
  constexpr uint64_t kMiB = 1024 * 1024;
  return std::chrono::seconds(60 + static_cast<int64_t>((size + kMiB - 1) / kMiB));
}

EvidenceUploader::EvidenceUploader(EvidenceUploaderOptions options) : options_(std::move(options)) {
  options_.chunk_bytes = std::clamp<size_t>(options_.chunk_bytes, 1, 1024 * 1024);
  if (options_.progress_every_bytes == 0) options_.progress_every_bytes = 4 * 1024 * 1024;
  channels_.resize(options_.session.targets.size());
}

void EvidenceUploader::cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  if (in_flight_ != nullptr) in_flight_->TryCancel();
}

absl::StatusOr<v1::EvidenceReceipt> EvidenceUploader::upload(const fs::path& bundle,
                                                             const v1::EvidenceHeader& header,
                                                             const Progress& progress) {
  if (channels_.empty()) return absl::FailedPreconditionError("no controller address to upload to");
  absl::Status last;
  for (size_t attempt = 0; attempt < channels_.size(); ++attempt) {
    size_t target = (current_ + attempt) % channels_.size();
    bool unavailable = false;
    auto receipt = uploadOnce(target, bundle, header, progress, &unavailable);
    if (receipt.ok()) {
      current_ = target;
      return receipt;
    }
    last = receipt.status();
    if (!unavailable) break;
  }
  return last;
}

absl::StatusOr<v1::EvidenceReceipt> EvidenceUploader::uploadOnce(size_t target,
                                                                 const fs::path& bundle,
                                                                 const v1::EvidenceHeader& header,
                                                                 const Progress& progress,
                                                                 bool* unavailable) {
  *unavailable = false;
  int fd = ::open(bundle.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        fmt::format("cannot read {}: {}", bundle.string(), std::strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  if (channels_[target] == nullptr) {
    channels_[target] =
        grpc::CreateCustomChannel(options_.session.targets[target], options_.session.credentials,
                                  evidenceChannelArguments(options_.session));
  }
  auto stub = v1::AgentChannel::NewStub(channels_[target]);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + uploadDeadline(header.size()));
  {
    std::lock_guard lock(mu_);
    if (cancelled_) return absl::CancelledError("upload cancelled: the agent is stopping");
    in_flight_ = &ctx;
  }
  struct Unregister {
    EvidenceUploader* self;
    ~Unregister() {
      std::lock_guard lock(self->mu_);
      self->in_flight_ = nullptr;
    }
  } unregister{this};

  v1::EvidenceReceipt receipt;
  auto writer = stub->UploadEvidence(&ctx, &receipt);
  v1::EvidenceUpload msg;
  *msg.mutable_header() = header;
  bool stream_ok = writer->Write(msg);
  uint64_t sent = 0;
  uint64_t next_progress = options_.progress_every_bytes;
  std::string buf(options_.chunk_bytes, '\0');
  absl::Status local;  // a failure on our side (file), reported instead of gRPC's status
  while (stream_ok) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      local = absl::DataLossError(
          fmt::format("cannot read {}: {}", bundle.string(), std::strerror(errno)));
      break;
    }
    if (n == 0) break;
    if (sent + static_cast<uint64_t>(n) > header.size()) {
      local = absl::DataLossError(
          fmt::format("{} is longer than the {} bytes spooled", bundle.string(), header.size()));
      break;
    }
    msg.set_data(buf.data(), static_cast<size_t>(n));
    stream_ok = writer->Write(msg);
    if (!stream_ok) break;
    sent += static_cast<uint64_t>(n);
    if (progress && sent >= next_progress) {
      progress(sent, header.size());
      next_progress = sent + options_.progress_every_bytes;
    }
  }
  if (local.ok() && stream_ok && sent != header.size()) {
    local = absl::DataLossError(
        fmt::format("{} holds {} bytes, {} were spooled", bundle.string(), sent, header.size()));
  }
  if (!local.ok()) {
    ctx.TryCancel();
    writer->Finish();
    return local;
  }
  if (stream_ok) writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (!st.ok()) {
    *unavailable = st.error_code() == grpc::StatusCode::UNAVAILABLE;
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()), describeGrpcStatus(st));
  }
  if (progress) progress(sent, header.size());
  return receipt;
}

}  // namespace bulkhead::agent
