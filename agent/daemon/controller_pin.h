// Pins the controllers' IP literals: resolved once at start and remembered in the state dir,
// so reconnects (and isolation, which blocks DNS) need no resolver.
//
// Several controllers (`--controller` repeated: replicas sharing one database, one active at a
// time) have one pin file each, by their position in the --controller list:
//   STATE_DIR/controller.json     the first (the file of single-controller agents, unchanged)
//   STATE_DIR/controller-N.json   the N-th, N >= 2 (no leading zero)
// After a pinning that pinned at least one controller, a file holds exactly the pin of the
// controller now at its position; the file of a position that could not be pinned and the
// files beyond the last controller are removed. A previous pin is found by host:port in any of
// the files, so a reordered --controller list keeps its pins.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/containment.pb.h"
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
// Every pin's targets, pin after pin (v4 then v6 within each): the session's targets.
std::vector<std::string> grpcTargets(const std::vector<PinnedController>& pins);

// Every pin's IP:port, pin after pin, each endpoint once: what isolation keeps reachable.
std::vector<bulkhead::v1::Endpoint> controllerEndpoints(const std::vector<PinnedController>& pins);

std::string serializePin(const PinnedController& pin);
absl::StatusOr<PinnedController> parsePin(const std::string& json);

// The pin file of the controller at `index` (0-based) in the --controller list.
std::filesystem::path pinPath(const std::filesystem::path& state_dir, size_t index = 0);

struct ControllerPins {
  struct Unpinned {
    HostPort controller;
    absl::Status why;
  };
  std::vector<PinnedController> pins;  // the controllers pinned, in --controller order
  std::vector<Unpinned> unpinned;      // the others, in --controller order
};

// Pins each of `controllers`: an IP literal is used as is; a name is resolved; if resolution
// fails, a previous pin for the same host:port is used. A controller with neither is left out
// (its error in `unpinned`) and the others are used. Then writes the pin files as the header
// says (a file is rewritten only when its pin changed). Fails only if no controller can be
// pinned (Unavailable, naming every host; the files are left as they were), or if a file
// cannot be written.
absl::StatusOr<ControllerPins> pinControllers(const std::vector<HostPort>& controllers,
                                              const std::filesystem::path& state_dir,
                                              const Resolver& resolve, int64_t now_unix_ms);

// pinControllers for one controller: its pin, or why there is none.
absl::StatusOr<PinnedController> pinController(const HostPort& controller,
                                               const std::filesystem::path& state_dir,
                                               const Resolver& resolve, int64_t now_unix_ms);

// Reads the first controller's pin (controller.json). NotFound if none.
absl::StatusOr<PinnedController> readPin(const std::filesystem::path& state_dir);

// Every pin in the state dir, in position order (controller.json, controller-2.json, ...): what
// --restore keeps reachable. A file that cannot be read or parsed is left out and its error
// (naming the file) appended to `errors` if given. Empty if there is none.
std::vector<PinnedController> readPins(const std::filesystem::path& state_dir,
                                       std::vector<absl::Status>* errors = nullptr);

}  // namespace bulkhead::agent
