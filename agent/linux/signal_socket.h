// The agent's root-only signal socket (STATE_DIR/signal.sock, mode 0600): local detection
// tools (`bulkhead-agent signal`, `wazuh-active-response`, `sshguard-backend`) hand it one
// request line and get one answer line back (the protocol is agent/core/signal.h). This class
// is the transport only: who may connect, how much and how long it reads, how many clients it
// holds; what a request means is the handler's business.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "agent/core/signal.h"

namespace bulkhead::agent {

struct SignalSocketOptions {
  uid_t allowed_uid = 0;  // peers with another SO_PEERCRED uid are refused
  size_t max_request_bytes = kMaxSignalRequestBytes;  // newline included
  // From accept to the request's newline (or EOF); a slower client is answered "invalid".
  std::chrono::milliseconds read_timeout{2000};
  // Connections held at once (reading, or waiting for the handler's answer). One more is
  // answered "not-delivered: the agent is busy" at once and closed.
  int max_clients = 32;
};

class SignalSocketServer {
 public:
  // Sends one answer line (newline included). Thread-safe, callable from any thread; calls
  // after the first for a request, or after the server is gone, do nothing.
  using Reply = std::function<void(std::string line)>;
  // Gets each complete request line (without its newline). Must not block: it answers later
  // through `reply`, which it must call exactly once (the client's connection and its slot
  // among max_clients are held until then). Called on the server thread.
  using Handler = std::function<void(std::string line, Reply reply)>;

  // Binds `path` (a stale socket file is replaced: the caller holds the state-dir lock),
  // chmod 0600, and serves on a thread of its own.
  static absl::StatusOr<std::unique_ptr<SignalSocketServer>> create(
      const std::filesystem::path& path, Handler handler, SignalSocketOptions options = {});

  // Stops the thread, closes every client connection (unanswered clients see EOF) and removes
  // the socket file.
  ~SignalSocketServer();

  SignalSocketServer(const SignalSocketServer&) = delete;
  SignalSocketServer& operator=(const SignalSocketServer&) = delete;

 private:
  struct Shared;
  SignalSocketServer(std::filesystem::path path, int listen_fd, int stop_fd,
                     std::shared_ptr<Shared> shared, Handler handler, SignalSocketOptions options);
  void serve();

  std::filesystem::path path_;
  int listen_fd_;
  int stop_fd_;                     // eventfd: written by the destructor
  std::shared_ptr<Shared> shared_;  // answers handed over by Reply; outlives the server
  Handler handler_;
  SignalSocketOptions options_;
  std::thread thread_;
};

// Client side: connects to `path`, writes `request_line` and reads the answer line, waiting
// at most `timeout` in all. UNAVAILABLE if nothing listens there ("the agent is not running"),
// DEADLINE_EXCEEDED if no answer came in time, PERMISSION_DENIED if the socket is not ours to
// open.
absl::StatusOr<std::string> exchangeSignalSocket(const std::filesystem::path& path,
                                                 const std::string& request_line,
                                                 std::chrono::milliseconds timeout);

}  // namespace bulkhead::agent
