// The Fleet: the controller's in-memory view of every host and the streams to them. It owns
// the HostRegistry and the desired states, routes agent messages, and offers consistent
// snapshots to the operator service.
//
// Threading: one mutex (mu_) guards everything here. Methods called from stream reactions
// (onHello, onMessage, onStreamDone) only touch memory; the store is written by flush() (on
// the I/O scheduler) and by the operator-facing mutations. No stream is called into while mu_
// is held except AgentStream::enqueue (which never calls gRPC); kicks and finishes run after
// mu_ is released.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "bulkhead/v1/agent.pb.h"
#include "bulkhead/v1/operator.pb.h"
#include "controller/core/clock.h"
#include "controller/core/registry.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

class AgentStream;

struct FleetOptions {
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds heartbeat_timeout{15000};
};

class Fleet {
 public:
  Fleet(const Clock& clock, Store& store, FleetOptions options);
  ~Fleet();

  // Loads hosts (all offline) and desired states from the store. Call before serving.
  absl::Status restore();

  // --- stream reactions (gRPC threads; never block) ---
  // The stream's hello. Registers the stream (superseding an older one of the same host) and
  // queues Welcome and the host's desired state. A non-OK status refuses the stream.
  grpc::Status onHello(const std::shared_ptr<AgentStream>& stream, const bulkhead::v1::Hello& hello);
  void onMessage(AgentStream& stream, const bulkhead::v1::AgentMessage& msg);
  // OnDone of a stream: unregisters it.
  void onStreamDone(AgentStream* stream);

  // --- maintenance ---
  // Marks hosts offline whose heartbeat is overdue and ends their streams.
  void sweep();
  // Persists changed host rows (one transaction). Blocks on the store.
  absl::Status flush();
  // Ends every stream with `status` (shutdown). New hellos are refused afterwards.
  void closeAllStreams(const grpc::Status& status);
  size_t streamCount();

  // --- operator reads (consistent snapshots) ---
  std::vector<bulkhead::v1::HostSummary> listHosts(const Labels& selector);
  std::optional<bulkhead::v1::HostStatus> getHost(const std::string& host_id);
  bool online(const std::string& host_id);

 private:
  // Stream work collected under mu_ and run after it is released (declare before the lock).
  struct Deferred {
    std::vector<std::shared_ptr<AgentStream>> kick;
    std::vector<std::pair<std::shared_ptr<AgentStream>, grpc::Status>> finish;
    ~Deferred();
  };
  bulkhead::v1::HostSummary summaryLocked(const HostInfo& h) const;   // REQUIRES: mu_

  const Clock& clock_;
  Store& store_;
  const FleetOptions options_;

  std::mutex mu_;
  HostRegistry registry_;                                                    // GUARDED_BY(mu_)
  std::unordered_map<std::string, std::shared_ptr<AgentStream>> streams_;    // GUARDED_BY(mu_)
  std::map<std::string, bulkhead::v1::DesiredState> desired_;                // GUARDED_BY(mu_)
  bool closing_ = false;                                                     // GUARDED_BY(mu_)
};

}  // namespace bulkhead::controller
