#include "controller/store/evidence_files.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

#include "common/format.h"

namespace bulkhead::controller {

namespace fs = std::filesystem;

namespace {

absl::Status errnoError(const std::string& what, const fs::path& path) {
  return absl::InternalError(fmt::format("{} {}: {}", what, path.string(), std::strerror(errno)));
}

absl::Status syncDir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errnoError("open directory", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return errnoError("fsync directory", dir);
  return absl::OkStatus();
}

}  // namespace

PartFile::PartFile(fs::path path, int fd) : path_(std::move(path)), fd_(fd) {}

PartFile::~PartFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) remove();
}

absl::Status PartFile::write(std::string_view data) {
  sha_.update(data);
  size_ += data.size();
  while (!data.empty()) {
    ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errnoError("write", path_);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string PartFile::finishHash() { return sha_.hexDigest(); }

absl::Status PartFile::syncAndClose() {
  if (::fsync(fd_) != 0) return errnoError("fsync", path_);
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) return errnoError("close", path_);
  return absl::OkStatus();
}

void PartFile::remove() {
  std::error_code ec;
  fs::remove(path_, ec);
}

absl::Status EvidenceFiles::init() {
  std::error_code ec;
  fs::create_directories(root_ / "incoming", ec);
  if (ec) {
    return absl::PermissionDeniedError(fmt::format("evidence store: cannot create {}: {}",
                                                   (root_ / "incoming").string(), ec.message()));
  }
  for (const auto& entry : fs::directory_iterator(root_ / "incoming", ec)) {
    if (entry.path().extension() != ".part") continue;
    spdlog::info("evidence store: removing incomplete upload {} (its agent uploads it again)",
                 entry.path().string());
    std::error_code rm;
    fs::remove(entry.path(), rm);
  }
  if (ec) {
    return absl::PermissionDeniedError(fmt::format("evidence store: cannot list {}: {}",
                                                   (root_ / "incoming").string(), ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PartFile>> EvidenceFiles::createPart(const std::string& capture_id) {
  std::string safe = capture_id.substr(0, 100);
  for (char& c : safe) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  }
  std::random_device rd;
  for (int attempt = 0; attempt < 8; ++attempt) {
    fs::path path = root_ / "incoming" / fmt::format("{}.{:08x}.part", safe, rd());
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) return std::make_unique<PartFile>(path, fd);
    if (errno != EEXIST) return errnoError("create", path);
  }
  return absl::InternalError("evidence store: cannot pick a unique incoming file name");
}

std::string EvidenceFiles::relativePath(const std::string& id) {
  return fmt::format("{}/{}.tar.gz", id.substr(0, 2), id);
}

absl::StatusOr<fs::path> EvidenceFiles::bundlePath(const std::string& id) const {
  if (id.size() != 64 || id.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::InvalidArgumentError(
        fmt::format("evidence id \"{}\": not 64 lowercase hex digits", id.substr(0, 80)));
  }
  return root_ / relativePath(id);
}

absl::StatusOr<uint64_t> EvidenceFiles::availableBytes() const {
  struct statvfs st {};
  if (::statvfs(root_.c_str(), &st) != 0) return errnoError("statvfs", root_);
  return static_cast<uint64_t>(st.f_bavail) * static_cast<uint64_t>(st.f_frsize);
}

absl::Status EvidenceFiles::commit(PartFile& part, const std::string& id, bool* already_there) {
  *already_there = false;
  fs::path target = root_ / relativePath(id);
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) {
    return absl::InternalError(fmt::format("evidence store: cannot create {}: {}",
                                           target.parent_path().string(), ec.message()));
  }
  // link(2) fails with EEXIST instead of replacing: a stored bundle is never overwritten.
  if (::link(part.path().c_str(), target.c_str()) != 0) {
    if (errno != EEXIST) return errnoError("link to", target);
    *already_there = true;
    part.remove();
    return absl::OkStatus();
  }
  part.remove();
  part.markCommitted();
  if (auto s = syncDir(target.parent_path()); !s.ok()) return s;
  return syncDir(root_ / "incoming");
}

absl::StatusOr<std::string> sha256OfFile(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errnoError("open", path);
  evidence::Sha256 sha;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return errnoError("read", path);
    }
    if (n == 0) break;
    sha.update(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return sha.hexDigest();
}

}  // namespace bulkhead::controller
