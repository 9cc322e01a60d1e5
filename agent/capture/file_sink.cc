#include "agent/capture/file_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/format.h"
#include "common/json.h"
#include "evidence/bundle.h"
#include "evidence/hash.h"

namespace bulkhead::agent::capture {
namespace {

constexpr size_t kFlushAt = 256 * 1024;
constexpr size_t kCopyBlock = 1 << 20;
constexpr size_t kMaxWarningLength = 1024;

bool writeAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Paths collectors may write: clean, not the bundle's reserved members, not the engine's log.
bool writablePath(std::string_view path) {
  return evidence::isCleanMemberPath(path) && !evidence::isReservedMemberPath(path) &&
         path != "collection-log.jsonl";
}

}  // namespace

std::vector<std::pair<std::string, std::filesystem::path>> SharedCopies::completed() const {
  std::lock_guard lock(mu_);
  return completed_;
}

bool SharedCopies::has(const std::string& path) const {
  std::lock_guard lock(mu_);
  return done_.count(path) > 0;
}

FileSink::FileSink(std::shared_ptr<SharedCopies> copies, std::string collector,
                   std::filesystem::path dir, uint64_t size_cap,
                   std::shared_ptr<const std::atomic<bool>> cancel)
    : copies_(std::move(copies)),
      collector_(std::move(collector)),
      dir_(std::move(dir)),
      size_cap_(size_cap),
      cancel_(std::move(cancel)) {}

FileSink::~FileSink() { seal(); }

void FileSink::setDeadline(std::chrono::steady_clock::time_point deadline) {
  std::lock_guard lock(mu_);
  deadline_ = deadline;
}

SinkReport FileSink::seal() {
  std::lock_guard lock(mu_);
  if (!sealed_) {
    for (auto& [path, out] : outputs_) {
      flushLocked(out);
      if (out.fd >= 0) ::close(out.fd);
      out.fd = -1;
    }
    sealed_ = true;
  }
  return report_;
}

bool FileSink::stoppedLocked() const {
  return sealed_ || std::chrono::steady_clock::now() >= deadline_ ||
         (cancel_ != nullptr && cancel_->load());
}

bool FileSink::stopped() const {
  std::lock_guard lock(mu_);
  return stoppedLocked();
}

bool FileSink::admitLocked(uint64_t bytes) {
  if (report_.truncated) return false;
  if (report_.bytes + bytes > size_cap_) {
    report_.truncated = true;
    report_.cap_error = fmt::format("size cap of {} bytes reached", size_cap_);
    return false;
  }
  report_.bytes += bytes;
  return true;
}

void FileSink::warnLocked(std::string message) {
  ++report_.warnings;
  if (report_.warning_samples.size() < kMaxWarningSamples) {
    if (message.size() > kMaxWarningLength) message.resize(kMaxWarningLength);
    report_.warning_samples.push_back(std::move(message));
  }
}

void FileSink::warn(std::string_view message) {
  std::lock_guard lock(mu_);
  warnLocked(std::string(message));
}

FileSink::Output* FileSink::outputLocked(const std::string& path) {
  auto it = outputs_.find(path);
  if (it != outputs_.end()) return it->second.fd >= 0 ? &it->second : nullptr;
  Output out;
  out.disk = dir_ / path;
  std::error_code ec;
  std::filesystem::create_directories(out.disk.parent_path(), ec);
  out.fd = ::open(out.disk.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out.fd < 0) {
    warnLocked(
        fmt::format("engine: cannot create {}: {}", out.disk.string(), std::strerror(errno)));
    outputs_.emplace(path, std::move(out));  // remembered as failed: one warning
    return nullptr;
  }
  report_.outputs.emplace_back(path, out.disk);
  return &outputs_.emplace(path, std::move(out)).first->second;
}

bool FileSink::flushLocked(Output& out) {
  if (out.buffer.empty() || out.fd < 0) return true;
  bool ok = writeAll(out.fd, out.buffer.data(), out.buffer.size());
  out.buffer.clear();
  if (!ok) {
    warnLocked(
        fmt::format("engine: writing {} failed: {}", out.disk.string(), std::strerror(errno)));
    ::close(out.fd);
    out.fd = -1;
  }
  return ok;
}

bool FileSink::record(std::string_view artifact, const nlohmann::json& record) {
  const std::string path = fmt::format("artifacts/{}", artifact);
  // Serialized outside the lock; invalid UTF-8 in a string becomes U+FFFD instead of throwing.
  std::string line = dumpJson(record);
  line.push_back('\n');
  std::lock_guard lock(mu_);
  if (stoppedLocked()) return false;
  if (artifact.find('/') != std::string_view::npos || !writablePath(path)) {
    warnLocked(fmt::format("engine: record for a bad artifact name \"{}\" dropped", artifact));
    return true;
  }
  if (!admitLocked(line.size())) return false;
  Output* out = outputLocked(path);
  if (out == nullptr) return true;
  out->buffer += line;
  ++report_.records;
  if (out->buffer.size() >= kFlushAt) flushLocked(*out);
  return true;
}

bool FileSink::file(std::string_view path_view, std::string_view bytes) {
  const std::string path(path_view);
  std::lock_guard lock(mu_);
  if (stoppedLocked()) return false;
  if (!writablePath(path) || path.starts_with("binaries/")) {
    warnLocked(fmt::format("engine: file with a bad path \"{}\" dropped", path));
    return true;
  }
  if (auto it = outputs_.find(path); it != outputs_.end()) {
    warnLocked(fmt::format("engine: {} written twice; the second write dropped", path));
    return true;
  }
  if (!admitLocked(bytes.size())) return false;
  Output* out = outputLocked(path);
  if (out == nullptr) return true;
  if (!writeAll(out->fd, bytes.data(), bytes.size())) {
    warnLocked(
        fmt::format("engine: writing {} failed: {}", out->disk.string(), std::strerror(errno)));
  }
  ::close(out->fd);
  out->fd = -1;
  return true;
}

absl::StatusOr<collect::ArtifactSink::Copied> FileSink::copy(std::string_view path_view, int fd,
                                                             uint64_t cap) {
  const std::string path(path_view);
  if (!writablePath(path)) {
    return absl::InvalidArgumentError(fmt::format("copy to a bad path \"{}\"", path));
  }
  std::filesystem::path tmp;
  uint64_t allowance = 0;
  int out = -1;
  {
    std::lock_guard lock(mu_);
    if (stoppedLocked()) {
      return absl::DeadlineExceededError(fmt::format("{}: time limit reached", collector_));
    }
    std::lock_guard shared(copies_->mu_);
    if (copies_->busy_.count(path) > 0) {
      return absl::AlreadyExistsError(fmt::format("{}: already copied in this capture", path));
    }
    if (copies_->left_ == 0) {
      return absl::ResourceExhaustedError(fmt::format(
          "{}: the capture's binary budget of {} bytes is spent", path, copies_->budget_));
    }
    allowance = std::min(cap, copies_->left_);
    tmp = copies_->dir_ / fmt::format("{}.bin", copies_->next_id_++);
    // Created under the sink's lock: once sealed, no file appears in the work directory.
    out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
      return absl::InternalError(
          fmt::format("{}: cannot create {}: {}", path, tmp.string(), std::strerror(errno)));
    }
    copies_->left_ -= allowance;
    copies_->busy_.insert(path);
  }
  auto fail = [&](absl::Status status) {
    ::close(out);
    ::unlink(tmp.c_str());
    std::lock_guard shared(copies_->mu_);
    copies_->left_ += allowance;
    copies_->busy_.erase(path);
    return status;
  };

  std::vector<char> buf(kCopyBlock);
  evidence::Sha256 hash;
  Copied copied;
  while (copied.bytes < allowance) {
    if (stopped()) {
      return fail(absl::DeadlineExceededError(
          fmt::format("{}: time limit reached while copying {}", collector_, path)));
    }
    size_t want = static_cast<size_t>(std::min<uint64_t>(kCopyBlock, allowance - copied.bytes));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(copied.bytes));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return fail(absl::InternalError(fmt::format("{}: read: {}", path, std::strerror(errno))));
    if (n == 0) break;
    if (!writeAll(out, buf.data(), static_cast<size_t>(n))) {
      return fail(absl::InternalError(
          fmt::format("{}: writing {}: {}", path, tmp.string(), std::strerror(errno))));
    }
    hash.update(buf.data(), static_cast<size_t>(n));
    copied.bytes += static_cast<uint64_t>(n);
  }
  if (copied.bytes == allowance) {
    char probe;
    ssize_t more = ::pread(fd, &probe, 1, static_cast<off_t>(copied.bytes));
    if (more > 0) {
      if (allowance < cap) {
        return fail(absl::ResourceExhaustedError(fmt::format(
            "{}: larger than the {} bytes left of the capture's binary budget of {} bytes; "
            "not copied",
            path, allowance, copies_->budget_)));
      }
      copied.truncated = true;
    }
  }
  if (::close(out) != 0) {
    out = -1;
    return fail(absl::InternalError(fmt::format("{}: closing {}", path, tmp.string())));
  }
  out = -1;
  copied.sha256 = hash.hexDigest();
  std::lock_guard lock(mu_);
  if (sealed_) {
    ::unlink(tmp.c_str());
    std::lock_guard shared(copies_->mu_);
    copies_->left_ += allowance;
    copies_->busy_.erase(path);
    return absl::DeadlineExceededError(
        fmt::format("{}: time limit reached while copying {}", collector_, path));
  }
  std::lock_guard shared(copies_->mu_);
  copies_->left_ += allowance - copied.bytes;
  copies_->done_.insert(path);
  copies_->completed_.emplace_back(path, tmp);
  return copied;
}

bool FileSink::has(std::string_view path) const { return copies_->has(std::string(path)); }

}  // namespace bulkhead::agent::capture
