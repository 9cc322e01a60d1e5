// One agent's bidirectional stream (AgentChannel.Connect) on the gRPC callback API.
//
// Threading: reactions run on gRPC threads and never block on I/O. Writes go through a
// per-stream queue with at most one StartWrite outstanding. Other threads talk to a stream
// only through enqueue()/kick()/finish(), which are thread-safe and never call into gRPC
// while holding the stream's lock (gRPC may run a reaction inline on the calling thread).
//
// Lifetime: the stream owns itself (self_) from start() until OnDone, where it unregisters
// from the Fleet (under the Fleet's lock) and drops that reference. A thread that copied a
// shared_ptr from the Fleet before that keeps the object alive but only finds it finished;
// gRPC never touches it after OnDone.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/grpcpp.h>

#include "bulkhead/v1/agent.grpc.pb.h"

namespace bulkhead::controller {

class Fleet;

// Messages queued for one stream beyond which the agent is considered stuck.
inline constexpr size_t kMaxQueuedMessages = 1024;

// Limits on a SignalReport, checked before the signal reaches the SignalIntake; a report over
// them is answered with an error receipt (nothing recorded). signals.proto states the first
// three.
inline constexpr int kMaxSignalAddresses = 64;
inline constexpr size_t kMaxSignalRuleBytes = 256;
inline constexpr int kMaxSignalLabels = 64;
// Signals of one stream submitted and not yet answered by the intake; one more is refused
// with an error receipt (the agent's local tool may retry).
inline constexpr int kMaxSignalsInFlight = 64;

// The one-line reason a forwarded signal is refused before the intake sees it, or empty.
std::string checkForwardedSignal(const bulkhead::v1::Signal& signal);

class AgentStream final
    : public grpc::ServerBidiReactor<bulkhead::v1::AgentMessage, bulkhead::v1::ControllerMessage>,
      public std::enable_shared_from_this<AgentStream> {
 public:
  // Creates the reactor for a new call and returns it to gRPC. Refuses (finishes) a peer that
  // is not an agent certificate.
  static grpc::ServerBidiReactor<bulkhead::v1::AgentMessage, bulkhead::v1::ControllerMessage>*
  start(Fleet* fleet, grpc::CallbackServerContext* ctx);

  // Queues a message without starting the write; call kick() afterwards, outside any lock
  // that a reaction might take. A desired state replaces one still waiting in the queue, and
  // one older than a state already queued is dropped. False if the stream is finishing.
  bool enqueue(bulkhead::v1::ControllerMessage msg);
  // Starts writing queued messages if no write is outstanding.
  void kick();
  void send(bulkhead::v1::ControllerMessage msg) {
    if (enqueue(std::move(msg))) kick();
  }
  // Ends the stream with `status` once queued writes are done. Idempotent; thread-safe.
  void finish(const grpc::Status& status);

  const std::string& hostId() const { return host_id_; }
  // The peer certificate's serial and expiry; set before the first read.
  const std::string& certSerial() const { return cert_serial_; }
  int64_t certNotAfterUnix() const { return cert_not_after_unix_; }
  const std::string& peer() const { return peer_; }
  // Set by the Fleet (under its lock) when the hello is accepted; 0 before.
  uint64_t session() const { return session_; }
  void setSession(uint64_t s) { session_ = s; }

  AgentStream(Fleet* fleet, grpc::CallbackServerContext* ctx);

 private:
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;
  // A SignalReport (read side): submits it to the Fleet's SignalIntake and answers with a
  // SignalReceipt of the same report_id, queued like any other write, once the intake is done.
  void onSignal(const bulkhead::v1::SignalReport& report);
  // Answers a certificate renewal request (Fleet::renewal()) with one CertificateRenewal.
  void onRenew(const bulkhead::v1::RenewCertificate& request);

  Fleet* const fleet_;
  grpc::CallbackServerContext* const ctx_;
  std::shared_ptr<AgentStream> self_;
  std::string host_id_;     // certificate CN; set before the first read
  std::string cert_serial_;
  int64_t cert_not_after_unix_ = 0;
  std::string peer_;
  uint64_t session_ = 0;
  bool hello_seen_ = false; // read side only
  bulkhead::v1::AgentMessage in_;
  std::atomic<int> signals_in_flight_{0};

  std::mutex mu_;
  std::deque<bulkhead::v1::ControllerMessage> queue_;   // front is being written if writing_
  bool writing_ = false;
  bool finish_requested_ = false;
  bool finish_called_ = false;
  grpc::Status finish_status_;
  uint64_t newest_state_generation_ = 0;
  bool state_queued_ = false;
};

}  // namespace bulkhead::controller
