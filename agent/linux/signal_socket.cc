#include "agent/linux/signal_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "agent/linux/unix_socket.h"
#include "common/format.h"

namespace bulkhead::agent {
namespace {

using Clock = std::chrono::steady_clock;

std::string errorLine(SignalResult result, std::string error) {
  SignalResponse r;
  r.result = result;
  r.error = std::move(error);
  return encodeSignalResponse(r);
}

}  // namespace

// Answers handed from Reply (any thread) to the server thread.
struct SignalSocketServer::Shared {
  int wake_fd = -1;  // eventfd: an answer is waiting
  std::mutex mu;
  bool stopped = false;                                // GUARDED_BY(mu)
  std::deque<std::pair<uint64_t, std::string>> ready;  // GUARDED_BY(mu)
  ~Shared() {
    if (wake_fd >= 0) ::close(wake_fd);
  }
};

absl::StatusOr<std::unique_ptr<SignalSocketServer>> SignalSocketServer::create(
    const std::filesystem::path& path, Handler handler, SignalSocketOptions options) {
  auto listening = listenUnixSocket(path, "signal socket", 64);
  if (!listening.ok()) return listening.status();
  const int fd = *listening;
  int stop = ::eventfd(0, EFD_CLOEXEC);
  auto shared = std::make_shared<Shared>();
  shared->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop < 0 || shared->wake_fd < 0) {
    int err = errno;
    if (stop >= 0) ::close(stop);
    ::close(fd);
    ::unlink(path.c_str());
    return absl::InternalError(fmt::format("eventfd: {}", std::strerror(err)));
  }
  return std::unique_ptr<SignalSocketServer>(
      new SignalSocketServer(path, fd, stop, std::move(shared), std::move(handler), options));
}

SignalSocketServer::SignalSocketServer(std::filesystem::path path, int listen_fd, int stop_fd,
                                       std::shared_ptr<Shared> shared, Handler handler,
                                       SignalSocketOptions options)
    : path_(std::move(path)),
      listen_fd_(listen_fd),
      stop_fd_(stop_fd),
      shared_(std::move(shared)),
      handler_(std::move(handler)),
      options_(options) {
  thread_ = std::thread([this] { serve(); });
}

SignalSocketServer::~SignalSocketServer() {
  {
    std::lock_guard lock(shared_->mu);
    shared_->stopped = true;
    shared_->ready.clear();
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(stop_fd_);
  ::unlink(path_.c_str());
}

void SignalSocketServer::serve() {
  struct Conn {
    int fd = -1;
    std::string buf;
    Clock::time_point deadline;
    bool waiting = false;  // the handler has the request; read no more
  };
  std::map<uint64_t, Conn> conns;
  uint64_t next_id = 1;
  auto close_conn = [&](std::map<uint64_t, Conn>::iterator it, const std::string& line) {
    if (!line.empty()) writeAll(it->second.fd, line);
    ::close(it->second.fd);
    return conns.erase(it);
  };
  auto dispatch = [&](uint64_t id, Conn& c, std::string line) {
    c.waiting = true;
    std::weak_ptr<Shared> weak = shared_;
    auto answered = std::make_shared<std::atomic<bool>>(false);
    handler_(std::move(line), [weak, id, answered](std::string out) {
      if (answered->exchange(true)) return;
      auto shared = weak.lock();
      if (!shared) return;
      std::lock_guard lock(shared->mu);
      if (shared->stopped) return;
      shared->ready.emplace_back(id, std::move(out));
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(shared->wake_fd, &one, sizeof one);
    });
  };

  for (;;) {
    std::vector<pollfd> fds = {
        {listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}, {shared_->wake_fd, POLLIN, 0}};
    std::vector<uint64_t> ids;
    auto now = Clock::now();
    Clock::time_point next_deadline = Clock::time_point::max();
    for (auto& [id, c] : conns) {
      if (c.waiting) continue;
      fds.push_back({c.fd, POLLIN, 0});
      ids.push_back(id);
      next_deadline = std::min(next_deadline, c.deadline);
    }
    int timeout_ms = -1;
    if (next_deadline != Clock::time_point::max()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(next_deadline - now).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
    }
    int r = ::poll(fds.data(), fds.size(), timeout_ms);
    if (r < 0 && errno != EINTR) break;
    if (r < 0) continue;
    if (fds[1].revents != 0) break;

    if (fds[2].revents != 0) {
      uint64_t count = 0;
      [[maybe_unused]] ssize_t n = ::read(shared_->wake_fd, &count, sizeof count);
      std::deque<std::pair<uint64_t, std::string>> ready;
      {
        std::lock_guard lock(shared_->mu);
        ready.swap(shared_->ready);
      }
      for (auto& [id, line] : ready) {
        if (auto it = conns.find(id); it != conns.end()) close_conn(it, line);
      }
    }

    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = conns.find(ids[i]);
      if (it == conns.end() || fds[3 + i].revents == 0) continue;
      Conn& c = it->second;
      char buf[4096];
      ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {  // EOF (or an error) before the newline: what came is the request
        if (c.buf.empty() || n < 0) {
          close_conn(it, "");
        } else {
          dispatch(it->first, c, std::move(c.buf));
        }
        continue;
      }
      c.buf.append(buf, static_cast<size_t>(n));
      size_t newline = c.buf.find('\n');
      if (newline != std::string::npos && newline + 1 <= options_.max_request_bytes) {
        c.buf.resize(newline);
        dispatch(it->first, c, std::move(c.buf));
      } else if (c.buf.size() >= options_.max_request_bytes) {
        close_conn(it,
                   errorLine(SignalResult::kInvalid, fmt::format("request: larger than {} bytes",
                                                                 options_.max_request_bytes)));
      }
    }

    now = Clock::now();
    for (auto it = conns.begin(); it != conns.end();) {
      if (!it->second.waiting && it->second.deadline <= now) {
        it = close_conn(it, errorLine(SignalResult::kInvalid,
                                      fmt::format("request: no complete line within {} ms",
                                                  options_.read_timeout.count())));
      } else {
        ++it;
      }
    }

    if ((fds[0].revents & POLLIN) != 0) {
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{1, 0};
      ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      if (peerUid(c) != options_.allowed_uid) {
        writeAll(c, errorLine(SignalResult::kInvalid,
                              "permission denied: the agent's signal socket is root-only"));
        ::close(c);
        continue;
      }
      if (conns.size() >= static_cast<size_t>(options_.max_clients)) {
        writeAll(c, errorLine(SignalResult::kNotDelivered,
                              fmt::format("the agent is busy ({} requests in progress); retry",
                                          conns.size())));
        ::close(c);
        continue;
      }
      Conn conn;
      conn.fd = c;
      conn.deadline = Clock::now() + options_.read_timeout;
      conns.emplace(next_id++, std::move(conn));
    }
  }
  for (auto& [id, c] : conns) ::close(c.fd);
}

absl::StatusOr<std::string> exchangeSignalSocket(const std::filesystem::path& path,
                                                 const std::string& request_line,
                                                 std::chrono::milliseconds timeout) {
  auto connected = connectUnixSocket(path, "signal socket");
  if (!connected.ok()) return connected.status();
  const int fd = *connected;
  auto deadline = Clock::now() + timeout;
  auto left_ms = [&] {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(left, 0, 3'600'000));
  };
  size_t off = 0;
  while (off < request_line.size()) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, left_ms()) <= 0) break;
    ssize_t n = ::send(fd, request_line.data() + off, request_line.size() - off,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;  // the agent closed early: its answer (if any) says why
    off += static_cast<size_t>(n);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, left_ms());
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ::close(fd);
      return absl::DeadlineExceededError(fmt::format("no answer from the agent on {} within {} ms",
                                                     path.string(), timeout.count()));
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.find('\n') != std::string::npos || out.size() > kMaxSignalRequestBytes) break;
  }
  ::close(fd);
  if (out.empty()) {
    return absl::UnavailableError(
        fmt::format("the agent closed {} without an answer (stopping?)", path.string()));
  }
  return out.substr(0, out.find('\n') + 1);
}

}  // namespace bulkhead::agent
