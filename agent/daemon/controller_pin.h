// Pins the controller's IP literals: resolved once at start and remembered in
// STATE_DIR/controller.json, so reconnects (and isolation, which blocks DNS) need no resolver.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/parse.h"

namespace bulkhead::agent {

struct PinnedController {
  std::string host;                // as given on the command line
  uint16_t port = 0;
  std::vector<std::string> ips;    // IP literals, v4 first, in resolver order otherwise
  int64_t pinned_at_unix_ms = 0;
};

// Resolves a host name to IP literals; IP literals resolve to themselves.
using Resolver = std::function<absl::StatusOr<std::vector<std::string>>(const std::string& host)>;

// resolveHost (common/resolve.h), but an IP literal resolves to itself as written; errors are
// Unavailable.
absl::StatusOr<std::vector<std::string>> resolveWithGetaddrinfo(const std::string& host);

// gRPC targets: "ipv4:IP:PORT,IP:PORT" for the v4 addresses, "ipv6:[IP]:PORT,..." for v6.
// v4 first. Empty if there are no IPs.
std::vector<std::string> grpcTargets(const PinnedController& pin);

std::string serializePin(const PinnedController& pin);
absl::StatusOr<PinnedController> parsePin(const std::string& json);

// The file under the state dir.
std::filesystem::path pinPath(const std::filesystem::path& state_dir);

// Pins `controller`: an IP literal is used as is; a name is resolved and the result written to
// the state dir. If resolution fails, a previous pin for the same host:port is used. Fails
// (Unavailable, naming the host) only if there is neither.
absl::StatusOr<PinnedController> pinController(const HostPort& controller,
                                               const std::filesystem::path& state_dir,
                                               const Resolver& resolve, int64_t now_unix_ms);

// Reads the last pin (for --restore's fail-closed ruleset). NotFound if none.
absl::StatusOr<PinnedController> readPin(const std::filesystem::path& state_dir);

}  // namespace bulkhead::agent
