// One agent's channel to the controller: a bidirectional stream on the gRPC callback API,
// re-opened with jittered exponential backoff whenever it ends, for as long as the session
// runs. Used by the daemon (one session) and by bench/ (thousands in one process).
//
// Protocol: the agent writes Hello first; the controller answers Welcome (heartbeat interval);
// the session then writes a Heartbeat every interval. Other controller messages go to the
// handler. At most one write is outstanding per stream; later ones wait in a queue.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/core/backoff.h"
#include "agent/rpc/timer_queue.h"
#include "bulkhead/v1/agent.grpc.pb.h"
#include "common/protocol_version.h"

namespace bulkhead::agent {

// Gets the session's events. Called on gRPC or timer threads, never concurrently for one
// session's connect/disconnect pair, and never after ControllerSession::stop() returns.
// Implementations must not block and must not call stop() from inside a callback.
class SessionHandler {
 public:
  virtual ~SessionHandler() = default;
  // The Hello to open each new stream with.
  virtual bulkhead::v1::AgentMessage hello() = 0;
  // A Heartbeat to send now.
  virtual bulkhead::v1::AgentMessage heartbeat() = 0;
  // Any controller message after Welcome.
  virtual void onMessage(const bulkhead::v1::ControllerMessage& message) = 0;

  // The controller accepted the stream (a Welcome of a protocol this agent speaks).
  virtual void onConnected(const bulkhead::v1::Welcome& /*welcome*/) {}
  // The stream ended (or never opened, or its Welcome was refused); `reason` is one line
  // ("UNAVAILABLE: ..."). `was_connected`: onConnected was called for it. `retry_in` is the
  // delay before the next attempt.
  virtual void onDisconnected(const std::string& /*reason*/, bool /*was_connected*/,
                              std::chrono::milliseconds /*retry_in*/) {}

  // What the session calls: the two events above with the targets they concern (entries of
  // SessionOptions::targets): the stream's, and for a disconnection the next attempt's (the
  // same target after a stream that was connected, the next one after a failed attempt).
  // By default they forward to onConnected / onDisconnected; a handler that logs which
  // controller replica it is on overrides these instead.
  virtual void onConnectedTo(const bulkhead::v1::Welcome& welcome, const std::string& /*target*/) {
    onConnected(welcome);
  }
  virtual void onDisconnectedFrom(const std::string& reason, bool was_connected,
                                  std::chrono::milliseconds retry_in, const std::string& /*target*/,
                                  const std::string& /*next_target*/) {
    onDisconnected(reason, was_connected, retry_in);
  }
};

struct SessionOptions {
  // gRPC target URIs, e.g. "ipv4:10.77.0.2:7443,10.77.0.3:7443" and "ipv6:[fd77::2]:7443"
  // (each controller replica's, in turn). The first attempt uses the first; an attempt that
  // fails (no stream, or no Welcome this agent accepts) moves the next attempt to the next
  // target, round and round; after a stream that was connected ends, the next attempt goes
  // to the same target first, and moves on if that fails.
  std::vector<std::string> targets;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Called before each connection attempt; non-null: credentials to use from now on (the
  // channels are rebuilt with them). May read files; must not call into the session.
  std::function<std::shared_ptr<grpc::ChannelCredentials>()> reload_credentials;
  std::string ssl_target_name;   // name checked in the controller certificate
  BackoffPolicy backoff;
  uint64_t seed = 0;             // jitter seed; give each session its own
  // One TCP connection per session (the load generator); otherwise gRPC may share one
  // subchannel between channels with identical arguments.
  bool local_subchannel_pool = false;
  std::chrono::milliseconds default_heartbeat{10'000};  // if Welcome gives 0
  std::chrono::milliseconds welcome_timeout{15'000};    // stream open without Welcome: cancel
  // The protocol this agent speaks: a Welcome of another major ends the stream (the reason
  // goes to onDisconnected) and the session retries with backoff.
  ProtocolVersion protocol = kProtocolVersion;
};

// Builds the channel arguments used by every agent stream (keepalive and reconnect backoff as
// in notes/linux-mechanics.md, certificate name override).
grpc::ChannelArguments agentChannelArguments(const SessionOptions& options);

// One line for a failed call: "UNAVAILABLE: failed to connect to all addresses".
std::string describeGrpcStatus(const grpc::Status& status);

class ControllerSession {
 public:
  // `timers` and `handler` must outlive the session.
  ControllerSession(SessionOptions options, TimerQueue* timers, SessionHandler* handler);
  // Calls stop().
  ~ControllerSession();

  ControllerSession(const ControllerSession&) = delete;
  ControllerSession& operator=(const ControllerSession&) = delete;

  // Opens the first stream now. Call once.
  void start();

  // Cancels the stream and pending timers, waits (bounded by gRPC cancellation) until the
  // stream is gone. No handler callback runs after stop() returns. Idempotent.
  void stop();

  // Queues a message on the current stream. False if no stream is established (no Welcome
  // yet): the caller keeps its state and resends it in Hello or after onConnected().
  bool send(const bulkhead::v1::AgentMessage& message);

  bool connected() const;

  // Ends the current stream so the next attempt (after the first backoff step) connects
  // afresh, with reloaded credentials (SessionOptions::reload_credentials): a renewed
  // certificate is used at once. `reason` goes to onDisconnected. No-op without a stream.
  void reconnect(const std::string& reason);

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;   // shared with pending timer callbacks
};

}  // namespace bulkhead::agent
