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
#include "agent/linux/unix_socket.h"
#include "common/format.h"

namespace bulkhead::agent {

absl::StatusOr<std::unique_ptr<StatusSocketServer>> StatusSocketServer::create(
    const std::filesystem::path& path, DocumentFn document, uid_t allowed_uid) {
  auto listening = listenUnixSocket(path, "status socket", 16);
  if (!listening.ok()) return listening.status();
  const int fd = *listening;
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
    if (peerUid(c) != allowed_uid_) {
      writeAll(c, "{\"error\":\"permission denied: the agent socket is root-only\"}\n");
    } else {
      writeAll(c, document_());
    }
    ::close(c);
  }
}

absl::StatusOr<std::string> queryStatusSocket(const std::filesystem::path& path,
                                              std::chrono::milliseconds timeout) {
  auto connected = connectUnixSocket(path, "status socket");
  if (!connected.ok()) return connected.status();
  const int fd = *connected;
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
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
