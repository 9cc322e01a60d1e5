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

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/agent.pb.h"
#include "bulkhead/v1/operator.pb.h"
#include "bulkhead/v1/replica.pb.h"
#include "controller/core/clock.h"
#include "controller/core/containment.h"
#include "controller/core/registry.h"
#include "controller/core/replica_link.h"
#include "controller/core/replica_pieces.h"
#include "controller/rpc/peer_gate.h"
#include "controller/service/enrollment.h"
#include "controller/service/fleet_control.h"
#include "controller/service/host_directory.h"
#include "controller/service/metrics.h"
#include "controller/service/signal_intake.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

class AgentStream;

struct FleetOptions {
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds heartbeat_timeout{15000};
  PeerGate* gate = nullptr;   // not owned; nullptr: no revocation, no expiry warnings
  // Where signals that agents forward (AgentMessage.signal) go. Not owned; must outlive the
  // server. nullptr: every SignalReport is answered with an error receipt.
  SignalIntake* signals = nullptr;
  // Renews agents' certificates (AgentMessage.renew). Not owned; must outlive the server.
  // nullptr: every request is answered with an error.
  AgentRenewal* renewal = nullptr;
  // Counts agents' reports and tamper events. Not owned; must outlive the fleet. nullptr:
  // nothing counted.
  Metrics* metrics = nullptr;
  // Several controllers serving one database at once: this one's name (unique among them) and
  // the link to the others (not owned; must outlive the fleet). Empty/nullptr: the only one.
  std::string replica;
  ReplicaLink* link = nullptr;
  // Hosts streaming to a controller not heard from for this long count as offline.
  std::chrono::milliseconds replica_timeout{6000};
};

class Fleet final : public FleetControl, public HostDirectory {
 public:
  Fleet(const Clock& clock, Store& store, FleetOptions options);
  ~Fleet();

  // Loads hosts (all offline) and desired states from the store. Call before serving.
  absl::Status restore();

  // --- stream reactions (gRPC threads; never block) ---
  // The stream's hello. Registers the stream (superseding an older one of the same host) and
  // queues Welcome and the host's desired state. A non-OK status refuses the stream, logged:
  // admitAgentHello's refusals (controller/service/agent_admission.h: a revoked certificate or
  // a host id other than the certificate's, PERMISSION_DENIED; a field that fails
  // helloInfoFrom, INVALID_ARGUMENT naming it; another protocol major, FAILED_PRECONDITION),
  // or UNAVAILABLE while shutting down. An enforced generation above the newest this controller
  // issued for the host is ignored and recorded as a tamper event; so are such generations
  // in heartbeats and state reports (onMessage).
  grpc::Status onHello(const std::shared_ptr<AgentStream>& stream, const bulkhead::v1::Hello& hello);
  void onMessage(AgentStream& stream, const bulkhead::v1::AgentMessage& msg);
  // OnDone of a stream: unregisters it.
  void onStreamDone(AgentStream* stream);

  // --- several controllers on one database (FleetOptions::replica) ---
  // Another controller's event (a ReplicaLink payload): where hosts stream, their agents'
  // acknowledgements. Malformed ones and this controller's own are ignored. Any thread.
  void onReplicaEvent(const std::string& payload);
  // A store change notice (SqlStore::kDesiredChannel, "REPLICA HOST ..."): another controller
  // committed new desired states for these hosts; they are read from the store and pushed to
  // those streaming here. Blocks on the store: not on a stream reaction's thread.
  void onDesiredChanged(const std::string& payload);
  // The link (re)connected: asks every controller for its streams and tells its own, then
  // reads every desired state again (notices sent while it was down are lost).
  void onReplicaLinkUp();
  // Every second: tells the others this controller serves; forgets the hosts of controllers
  // not heard from within replica_timeout. A controller forgotten so that speaks again (it
  // was stalled, or the link was slow, not dead) is asked to tell its streams again, so its
  // hosts count as online again without their agents reconnecting.
  void replicaTick();
  // FleetControl: reads `hosts`' states from the store; pushes newer ones to streams here.
  void reloadDesiredStates(const std::vector<std::string>& hosts) override;
  void setFleetBlocksListener(std::function<void()> listener) override;

  // --- maintenance ---
  // Marks hosts offline whose heartbeat is overdue and ends their streams.
  void sweep();
  // Persists changed host rows (one transaction). Blocks on the store.
  absl::Status flush();
  // Ends every stream with `status` (shutdown). New hellos are refused afterwards.
  void closeAllStreams(const grpc::Status& status);
  size_t streamCount();
  // Ends (PERMISSION_DENIED) every stream whose certificate the gate now revokes; returns the
  // host ids whose streams were ended.
  std::vector<std::string> closeRevokedStreams();
  PeerGate* gate() const { return options_.gate; }
  SignalIntake* signals() const { return options_.signals; }
  AgentRenewal* renewal() const { return options_.renewal; }

  // --- containment (FleetControl; called from the controller's containment thread) ---
  void setOpReadyHandler(std::function<void(std::shared_ptr<PendingOp>)> handler) override;
  std::map<std::string, TargetHost> targets() override;
  std::map<std::string, bulkhead::v1::DesiredState> desiredStates(
      const std::vector<std::string>& hosts) override;
  std::map<std::string, bulkhead::v1::DesiredState> allDesiredStates() override;
  bool publish(const std::shared_ptr<PendingOp>& op, const std::vector<std::string>& order,
               const std::map<std::string, bulkhead::v1::DesiredState>& states,
               const std::map<std::string, std::vector<std::string>>& sets) override;
  bool preview(const std::shared_ptr<PendingOp>& op, const std::vector<std::string>& order,
               const std::map<std::string, bulkhead::v1::DesiredState>& states,
               const std::map<std::string, std::vector<std::string>>& sets) override;
  bool settle(const std::shared_ptr<PendingOp>& op, bulkhead::v1::HostOutcome::State open_state,
              const std::string& open_error) override;
  // (FleetControl) The command listener runs on a gRPC thread.
  bool known(const std::string& host) override { return getHost(host).has_value(); }
  bool sendCommand(const std::string& host, bulkhead::v1::Command command,
                   std::string* why) override;
  void setCommandListener(
      std::function<void(const std::string&, const bulkhead::v1::CommandResult&)> listener)
      override;
  // Receives every CommandProgress (with the host it came from), like the command listener:
  // on a gRPC thread, under the Fleet's lock; must not block or call into the Fleet.
  void setProgressListener(
      std::function<void(const std::string&, const bulkhead::v1::CommandProgress&)> listener);
  std::vector<std::shared_ptr<PendingOp>> pendingOps() override;

  // --- operator reads (HostDirectory; consistent snapshots) ---
  std::vector<bulkhead::v1::HostSummary> listHosts(const Labels& selector) override;
  // Blocks in the hosts' desired states not expired at `now_unix_ms`, one per host and block
  // (a fleet-wide block counts once per host it was added to). For the metrics.
  size_t blocksInForce(int64_t now_unix_ms);
  std::optional<bulkhead::v1::HostStatus> getHost(const std::string& host_id) override;
  bool online(const std::string& host_id) override;
  bool applyLabels(const std::string& host_id, const Labels& labels,
                   const std::string& set_by) override;

 private:
  // Stream work collected under mu_ and run after it is released (declare before the lock).
  struct Deferred {
    std::vector<std::shared_ptr<AgentStream>> kick;
    std::vector<std::pair<std::shared_ptr<AgentStream>, grpc::Status>> finish;
    ~Deferred();
  };
  bulkhead::v1::HostSummary summaryLocked(const HostInfo& h) const;   // REQUIRES: mu_
  // The newest generation this controller issued for `host` (0: none). REQUIRES: mu_
  uint64_t issuedGenerationLocked(const std::string& host) const;
  // Records `what` as a tamper event of `host` (shown in status, persisted, logged), unless it
  // repeats the host's newest event. REQUIRES: mu_
  void flagLocked(const std::string& host, uint64_t session, const std::string& what);

  // A host's open outcome in an op: waits for an acknowledgement of `generation`, or (dry
  // run) for the CommandResult of `command_id`.
  struct Waiter {
    std::shared_ptr<PendingOp> op;
    size_t index = 0;   // in op->result.outcomes
    uint64_t generation = 0;
    std::string command_id;
  };
  // Applies `answer` to every waiter of `host`; a waiter it answers (returns true for) is
  // closed and its op reported ready when it was the last. REQUIRES: mu_
  // Queues a "host-offline" audit row when `host_id` is isolated (not while the controller
  // itself shuts down). Needs mu_.
  void noteOfflineLocked(const std::string& host_id, const std::string& why);
  void answerLocked(const std::string& host,
                    const std::function<bool(const Waiter&, bulkhead::v1::HostOutcome*)>& answer);
  // answerLocked with an agent's state report / enforced generation. REQUIRES: mu_
  void answerReportLocked(const std::string& host, const bulkhead::v1::StateReport& report);
  void answerEnforcedLocked(const std::string& host, uint64_t enforced);
  // Sends `event` (from this replica) on the link, if any. REQUIRES: mu_
  void sendReplicaLocked(bulkhead::v1::ReplicaEvent event);
  // `hosts` stream here now (up) or no longer (down). REQUIRES: mu_
  void announceStreamsLocked(const std::vector<std::string>& hosts, bool up);
  // Every host streaming here, up (another controller asked, or the link reconnected).
  // REQUIRES: mu_
  void announceStreamsHereLocked();
  // The agent of `host` answered here: tells the other controllers. REQUIRES: mu_
  void announceAckLocked(const std::string& host, const bulkhead::v1::StateReport* report,
                         uint64_t enforced);
  // A CommandResult from `host`'s agent (here, or relayed by another controller): to the
  // command listener and the dry runs waiting for it. REQUIRES: mu_
  void commandResultLocked(const std::string& host, const bulkhead::v1::CommandResult& r);
  // Handles another controller's event (pieces put together first). REQUIRES: mu_
  void replicaEventLocked(const bulkhead::v1::ReplicaEvent& event, Deferred& after);
  // Whether `host` streams to another controller heard from lately. REQUIRES: mu_
  bool remoteOnlineLocked(const std::string& host) const;
  bool onlineAnywhereLocked(const std::string& host) const {
    return registry_.online(host) || remoteOnlineLocked(host);
  }

  const Clock& clock_;
  Store& store_;
  const FleetOptions options_;

  std::mutex mu_;
  HostRegistry registry_;                                                    // GUARDED_BY(mu_)
  std::unordered_map<std::string, std::shared_ptr<AgentStream>> streams_;    // GUARDED_BY(mu_)
  std::map<std::string, bulkhead::v1::DesiredState> desired_;                // GUARDED_BY(mu_)
  bool closing_ = false;                                                     // GUARDED_BY(mu_)
  // Controller-own audit rows (isolated hosts going offline) waiting for the next flush.
  std::vector<AuditEntry> pending_rows_;                                     // GUARDED_BY(mu_)
  std::unordered_map<std::string, std::vector<Waiter>> waiters_;             // GUARDED_BY(mu_)
  std::map<uint64_t, std::shared_ptr<PendingOp>> pending_ops_;               // GUARDED_BY(mu_)
  std::function<void(std::shared_ptr<PendingOp>)> op_ready_;                 // GUARDED_BY(mu_)
  uint64_t next_command_ = 1;                                                // GUARDED_BY(mu_)
  std::function<void(const std::string&, const bulkhead::v1::CommandResult&)>
      command_listener_;                                                     // GUARDED_BY(mu_)
  std::function<void(const std::string&, const bulkhead::v1::CommandProgress&)>
      progress_listener_;                                                    // GUARDED_BY(mu_)
  // Hosts streaming to other controllers: host → that controller's name.
  std::unordered_map<std::string, std::string> remote_;  // GUARDED_BY(mu_)
  // Their agents' newest enforced generation heard on the link (answers a call whose commit
  // the agent acknowledged before this controller started waiting).
  std::unordered_map<std::string, uint64_t> remote_enforced_;  // GUARDED_BY(mu_)
  // Other controllers → when one of their events last arrived (unix ms).
  std::map<std::string, int64_t> replicas_seen_;  // GUARDED_BY(mu_)
  // Other controllers whose hosts replicaTick() forgot, not heard from since.
  std::set<std::string> replicas_forgotten_;  // GUARDED_BY(mu_)
  // Commands relayed here by other controllers: command id → the controller to answer.
  std::unordered_map<std::string, std::string> relayed_;  // GUARDED_BY(mu_)
  std::function<void()> fleet_blocks_listener_;           // GUARDED_BY(mu_)
  ReplicaAssembler pieces_;      // GUARDED_BY(mu_): events arriving in pieces
  uint64_t next_piece_key_ = 1;  // GUARDED_BY(mu_)
};

}  // namespace bulkhead::controller
