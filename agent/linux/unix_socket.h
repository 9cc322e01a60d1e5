// The agent's root-only local sockets (status, signals) share these: listening on a path with
// no window in which others can connect, connecting with a clear error, peer uid, writing all.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulkhead::agent {

// Replaces a stale file at `path`, binds (with umask 0777, so nobody can connect before the
// chmod), chmods 0600 and listens. Returns the listening fd (close-on-exec). `what` names the
// socket in errors ("status socket").
absl::StatusOr<int> listenUnixSocket(const std::filesystem::path& path, std::string_view what,
                                     int backlog);

// Connects to `path`. UNAVAILABLE "the agent is not running (...)" when nothing listens there;
// PERMISSION_DENIED when the caller may not open it (`what` says whose socket, in the message).
absl::StatusOr<int> connectUnixSocket(const std::filesystem::path& path, std::string_view what);

// The uid of the peer of a connected socket; nullopt when it cannot be read.
std::optional<uid_t> peerUid(int fd);

// Sends all of `data`, retrying on EINTR; gives up silently on any other error (a peer that
// went away). MSG_NOSIGNAL: never SIGPIPE.
void writeAll(int fd, std::string_view data);

}  // namespace bulkhead::agent
