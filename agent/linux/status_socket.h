// The agent's root-only local socket (STATE_DIR/agent.sock, mode 0600). A client that connects
// receives one JSON document and the socket closes; nothing is read from the client.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace bulkhead::agent {

class StatusSocketServer {
 public:
  // Returns the document to send; called on the server thread, must not block for long.
  using DocumentFn = std::function<std::string()>;

  // Binds `path` (a stale socket file is replaced: the caller holds the state-dir lock),
  // chmod 0600, and serves on a thread of its own. Peers whose SO_PEERCRED uid differs from
  // `allowed_uid` (0 in production) get a one-line JSON error instead.
  static absl::StatusOr<std::unique_ptr<StatusSocketServer>> create(
      const std::filesystem::path& path, DocumentFn document, uid_t allowed_uid = 0);

  // Stops the thread and removes the socket file.
  ~StatusSocketServer();

  StatusSocketServer(const StatusSocketServer&) = delete;
  StatusSocketServer& operator=(const StatusSocketServer&) = delete;

 private:
  StatusSocketServer(std::filesystem::path path, int listen_fd, int stop_fd, DocumentFn document,
                     uid_t allowed_uid);
  void serve();

  std::filesystem::path path_;
  int listen_fd_;
  int stop_fd_;   // eventfd: written by the destructor
  DocumentFn document_;
  uid_t allowed_uid_;
  std::thread thread_;
};

// Connects to `path` and reads the whole document. Unavailable if nothing listens there.
absl::StatusOr<std::string> queryStatusSocket(const std::filesystem::path& path,
                                              std::chrono::milliseconds timeout);

}  // namespace bulkhead::agent
