#include "controller/store/data_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/format.h"

namespace bulkhead::controller {
namespace fs = std::filesystem;

namespace {

// Removes group and other bits (and, on files, the execute bits) from one path, unless it is
// a symlink.
absl::Status makePrivate(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();  // removed meanwhile
    return absl::PermissionDeniedError(
        fmt::format("--data-dir: cannot stat {}: {}", path.string(), std::strerror(errno)));
  }
  if (S_ISLNK(st.st_mode)) return absl::OkStatus();
  mode_t want = st.st_mode & (S_ISDIR(st.st_mode) ? 0700 : 0600);
  if ((st.st_mode & 07777) == want) return absl::OkStatus();
  if (::chmod(path.c_str(), want) != 0) {
    return absl::PermissionDeniedError(fmt::format("--data-dir: cannot chmod {:04o} {}: {}", want,
                                                   path.string(), std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status prepareDataDir(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(
        fmt::format("--data-dir: {} exists and is not a directory", dir.string()));
  }
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          fmt::format("--data-dir: cannot create {}: {}", dir.string(), ec.message()));
    }
  }
  if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(
        fmt::format("--data-dir: {} is not readable and writable", dir.string()));
  }
  if (auto s = makePrivate(dir); !s.ok()) return s;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        fmt::format("--data-dir: cannot list {}: {}", dir.string(), ec.message()));
  }
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (auto s = makePrivate(it->path()); !s.ok()) return s;
  }
  if (ec) {
    return absl::PermissionDeniedError(
        fmt::format("--data-dir: cannot list {}: {}", dir.string(), ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace bulkhead::controller
