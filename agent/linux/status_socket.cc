#include "agent/linux/status_socket.h"

#include <poll.h>
#include <sys/eventfd.h>
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

absl::StatusOr<sockaddr_un> unixAddress(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string& p = path.native();
  if (p.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(
        fmt::format("status socket path {} is too long ({} bytes, at most {})", p, p.size(),
                    sizeof addr.sun_path - 1));
  }
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  return addr;
}

void writeAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<StatusSocketServer>> StatusSocketServer::create(
    const std::filesystem::path& path, DocumentFn document, uid_t allowed_uid) {
  auto addr = unixAddress(path);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(fmt::format("status socket: {}", std::strerror(errno)));
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    int err = errno;
    ::close(fd);
    return absl::PermissionDeniedError(
        fmt::format("cannot bind status socket {}: {}", path.string(), std::strerror(err)));
  }
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return absl::InternalError(
        fmt::format("status socket {}: {}", path.string(), std::strerror(err)));
  }
  int stop = ::eventfd(0, EFD_CLOEXEC);
  if (stop < 0) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return absl::InternalError(fmt::format("eventfd: {}", std::strerror(err)));
  }
  return std::unique_ptr<StatusSocketServer>(
      new StatusSocketServer(path, fd, stop, std::move(document), allowed_uid));
}

StatusSocketServer::StatusSocketServer(std::filesystem::path path, int listen_fd, int stop_fd,
                                       DocumentFn document, uid_t allowed_uid)
    : path_(std::move(path)),
      listen_fd_(listen_fd),
      stop_fd_(stop_fd),
      document_(std::move(document)),
      allowed_uid_(allowed_uid) {
  thread_ = std::thread([this] { serve(); });
}

StatusSocketServer::~StatusSocketServer() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(stop_fd_);
  ::unlink(path_.c_str());
}

void StatusSocketServer::serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    timeval tv{1, 0};
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != allowed_uid_) {
      writeAll(c, "{\"error\":\"permission denied: the agent socket is root-only\"}\n");
    } else {
      writeAll(c, document_());
    }
    ::close(c);
  }
}

absl::StatusOr<std::string> queryStatusSocket(const std::filesystem::path& path,
                                              std::chrono::milliseconds timeout) {
  auto addr = unixAddress(path);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(fmt::format("socket: {}", std::strerror(errno)));
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    int err = errno;
    ::close(fd);
    return absl::UnavailableError(fmt::format("the agent is not running (no answer on {}: {})",
                                              path.string(), std::strerror(err)));
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return absl::DeadlineExceededError(
          fmt::format("reading {}: {}", path.string(), std::strerror(err)));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace bulkhead::agent
