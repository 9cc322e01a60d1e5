// Helpers for kernel tests and the flow-kill benchmark: loopback TCP connections inside the
// private network namespace. Every function bounds its waits; fds are closed by Conn/Listener.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace bulkhead::test {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

inline socklen_t makeAddr(int family, uint16_t port, sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof(*ss));
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  sin6->sin6_addr = in6addr_loopback;
  return sizeof(sockaddr_in6);
}

inline uint16_t localPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

// A listening socket on 127.0.0.1 or ::1, port chosen by the kernel. fd < 0 on failure.
inline Fd listenLoopback(int family, int backlog = 4096) {
  Fd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return fd;
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss;
  socklen_t len = makeAddr(family, 0, &ss);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      listen(fd.get(), backlog) != 0) {
    return Fd();
  }
  return fd;
}

struct Conn {
  Fd client;
  Fd server;
  uint16_t client_port = 0;  // the client's ephemeral port
};

// Opens n connections to `listener` (family, port), accepting as it goes (or, with
// accept = false, leaving the server sides established in the accept queue: half the fds; the
// listener's backlog must then hold n). Returns fewer on failure; `error` says why.
inline std::vector<Conn> connectMany(int family, const Fd& listener, size_t n, std::string* error,
                                     bool accept = true) {
  std::vector<Conn> out;
  out.reserve(n);
  const uint16_t port = localPort(listener.get());
  sockaddr_storage ss;
  socklen_t len = makeAddr(family, port, &ss);
  for (size_t i = 0; i < n; ++i) {
    Conn c;
    c.client = Fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (c.client.get() < 0 || connect(c.client.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      *error = std::string("connect: ") + std::strerror(errno);
      return out;
    }
    c.client_port = localPort(c.client.get());
    if (!accept) {
      out.push_back(std::move(c));
      continue;
    }
    pollfd p{listener.get(), POLLIN, 0};
    if (poll(&p, 1, 2000) != 1) {
      *error = "accept: timed out";
      return out;
    }
    c.server = Fd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (c.server.get() < 0) {
      *error = std::string("accept: ") + std::strerror(errno);
      return out;
    }
    out.push_back(std::move(c));
  }
  return out;
}

// What a read on a socket sees within `timeout_ms`: bytes read (>0), 0 = EOF, -errno on
// error, or -ETIMEDOUT when nothing arrived.
inline int readWithin(int fd, int timeout_ms, char* buf = nullptr, size_t len = 0) {
  char tmp[256];
  if (buf == nullptr) {
    buf = tmp;
    len = sizeof(tmp);
  }
  pollfd p{fd, POLLIN, 0};
  int r = poll(&p, 1, timeout_ms);
  if (r == 0) return -ETIMEDOUT;
  if (r < 0) return -errno;
  ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
  if (n < 0) return -errno;
  return static_cast<int>(n);
}

// Sends `msg` on `a` and expects to read it on `b` within `timeout_ms`.
inline bool exchange(int a, int b, const std::string& msg, int timeout_ms = 2000) {
  if (send(a, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) {
    return false;
  }
  std::string got;
  char buf[256];
  while (got.size() < msg.size()) {
    int n = readWithin(b, timeout_ms, buf, sizeof(buf));
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
  return got == msg;
}

}  // namespace bulkhead::test
