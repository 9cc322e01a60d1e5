#include "agent/linux/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "common/format.h"

namespace bulkhead::agent {
namespace {

absl::StatusOr<sockaddr_un> unixAddress(const std::filesystem::path& path, std::string_view what) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string& p = path.native();
  if (p.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(fmt::format("{} path {} is too long ({} bytes, at most {})",
                                                  what, p, p.size(), sizeof addr.sun_path - 1));
  }
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  return addr;
}

}  // namespace

absl::StatusOr<int> listenUnixSocket(const std::filesystem::path& path, std::string_view what,
                                     int backlog) {
  auto addr = unixAddress(path, what);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(fmt::format("{}: {}", what, std::strerror(errno)));
  ::unlink(path.c_str());
  // Bound with no permissions for anyone until chmod: no window in which others can connect.
  mode_t old_mask = ::umask(0777);
  int bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  int bind_err = errno;
  ::umask(old_mask);
  if (bound != 0) {
    ::close(fd);
    return absl::PermissionDeniedError(
        fmt::format("cannot bind {} {}: {}", what, path.string(), std::strerror(bind_err)));
  }
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd, backlog) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return absl::InternalError(fmt::format("{} {}: {}", what, path.string(), std::strerror(err)));
  }
  return fd;
}

absl::StatusOr<int> connectUnixSocket(const std::filesystem::path& path, std::string_view what) {
  auto addr = unixAddress(path, what);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(fmt::format("socket: {}", std::strerror(errno)));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(fmt::format("cannot open {}: {} (the {} is root-only)",
                                                     path.string(), std::strerror(err), what));
    }
    return absl::UnavailableError(fmt::format("the agent is not running (no answer on {}: {})",
                                              path.string(), std::strerror(err)));
  }
  return fd;
}

std::optional<uid_t> peerUid(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  return cred.uid;
}

void writeAll(int fd, std::string_view data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace bulkhead::agent
