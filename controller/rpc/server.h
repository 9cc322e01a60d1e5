// The controller's gRPC server: AgentChannel and Operator on the callback API, the Fleet, and
// the background schedulers (heartbeat sweep, store flush).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/scheduler.h"
#include "controller/core/clock.h"
#include "controller/rpc/enrollment_server.h"
#include "controller/rpc/evidence.h"
#include "controller/rpc/fleet.h"
#include "controller/rpc/operator_service.h"
#include "controller/service/containment.h"
#include "controller/service/metrics.h"
#include "controller/service/notifications.h"
#include "controller/service/policies.h"
#include "controller/service/signal_actuator.h"
#include "controller/service/signals.h"
#include "controller/store/store.h"
#include "evidence/signing.h"

namespace bulkhead::controller {

// Largest message the server accepts (a bigger one fails the call with RESOURCE_EXHAUSTED).
inline constexpr int kMaxReceiveMessageBytes = 4 * 1024 * 1024;
// Largest message the enrollment listener accepts (a token and a CSR are about 2 KiB).
inline constexpr int kMaxEnrollMessageBytes = 64 * 1024;

// How much of one stream, and of one connection, a peer may send before the controller has
// read it: gRPC's initial window with its bandwidth-delay probing on, so that an evidence
// upload over a long link is not held to 64 KiB per round trip.
inline constexpr int kStreamWindowBytes = 4 * 1024 * 1024;

// The HTTP/2 transport settings of the agents' and operators' listener (not enrollment's):
// keepalive pings and the peers' ping limits, and a fixed flow-control window of
// kStreamWindowBytes instead of gRPC's bandwidth-delay probing. The probe sends a ping for
// nearly every message an agent sends (heartbeats, acknowledgements) and arms a timer for the
// next one: with 10,000 agents it cost about a third of the time of an isolate of all of them
// and about 40 % of the idle CPU (README, "Figures"). The controller adds the arguments of
// --grpc-arg after these.
void setAgentTransportArguments(grpc::ServerBuilder& builder);

struct ServerOptions {
  std::string listen;                                   // "ADDR:PORT" as gRPC takes it; port 0 picks one
  std::shared_ptr<grpc::ServerCredentials> credentials; // mTLS (serverCredentials())
  FleetOptions fleet;
  ContainmentOptions containment;
  Policies* policies = nullptr;       // not owned; nullptr: no exemption sets
  NameResolver* resolver = nullptr;   // not owned; nullptr: getaddrinfo(3)
  NameCacheOptions names;             // when exemption DNS names are resolved
  std::chrono::milliseconds sweep_interval{500};
  std::chrono::milliseconds flush_interval{1000};
  // Channel arguments of the listener applied after the controller's own (--grpc-arg).
  std::vector<std::pair<std::string, int>> channel_args;
  EvidenceOptions evidence;           // dir empty: no evidence store (captures refused)
  SignalServiceOptions signals;       // policy_dir empty: no playbooks (signals recorded only)
  // The controller's key and certificate, signing audit exports; unset: ExportAudit fails
  // UNAVAILABLE.
  std::optional<evidence::Signer> audit_signer;
  // Enrollment (service/enrollment.h): the CA and the controller's name; the addresses are
  // filled in from containment.endpoints and the enrollment listener's port. Without a CA key
  // enrollment is off. `enroll_listen` ("ADDR:PORT"; empty: no enrollment listener) serves the
  // Enrollment service alone with `enroll_credentials` (TLS without client certificates).
  EnrollmentOptions enrollment;
  std::string enroll_listen;
  std::shared_ptr<grpc::ServerCredentials> enroll_credentials;
  // Operator calls timed, agents' reports counted (and fleet.metrics, when unset). Not owned;
  // must outlive the server. nullptr: nothing counted.
  Metrics* metrics = nullptr;
  // The notification channels (controller/notify/'s Notifier). Not owned; must outlive the
  // server. nullptr: none (`notify channels` lists nothing, `notify test` finds no channel).
  NotificationBackend* notifications = nullptr;
};

class ControllerServer {
 public:
  // Restores the fleet from the store, binds and starts serving. Fails if the address cannot
  // be bound or the store cannot be read.
  static absl::StatusOr<std::unique_ptr<ControllerServer>> start(const Clock& clock, Store& store,
                                                                 ServerOptions options);
  ~ControllerServer();   // shutdown()

  int port() const { return port_; }
  int enrollPort() const { return enroll_port_; }  // 0: no enrollment listener
  Fleet& fleet() { return fleet_; }
  // Signals: the intake every front door uses, and reload() of playbooks on SIGHUP.
  SignalService& signals() { return *signals_; }
  // Webhook integrations: the operator calls, and the webhook listener's token checks.
  IntegrationService& integrations() { return *integrations_; }
  const NameCache& names() const { return names_; }

  // Ends agent streams, stops the server (waiting up to `grace` for calls), stops the
  // background work and flushes the registry to the store. Idempotent.
  void shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

 private:
  class AgentChannelService;
  // The fleet's SignalIntake: forwards to signals_, which is built after the fleet (it acts
  // through services that use the fleet). Pointed at it in the constructor, before serving.
  class LateSignalIntake final : public SignalIntake {
   public:
    void submit(SignalDelivery from, bulkhead::v1::Signal signal, SignalDone done) override {
      if (target == nullptr) {
        done(absl::UnavailableError("signals are not enabled on this controller"));
        return;
      }
      target->submit(std::move(from), std::move(signal), std::move(done));
    }
    SignalIntake* target = nullptr;
  };
  // The fleet's AgentRenewal: forwards to enrollment_, built after the fleet.
  class LateRenewal final : public AgentRenewal {
   public:
    absl::StatusOr<std::string> renew(const std::string& host_id, const std::string& tenant,
                                      const std::string& serial,
                                      const std::string& csr_pem) override {
      if (target == nullptr) return absl::UnavailableError("renewal is not ready");
      return target->renew(host_id, tenant, serial, csr_pem);
    }
    AgentRenewal* target = nullptr;
  };

  ControllerServer(const Clock& clock, Store& store, ServerOptions options);
  // Binds and starts the enrollment listener when one is asked for.
  absl::Status startEnrollment();

  ServerOptions options_;
  LateSignalIntake agent_signals_;
  LateRenewal agent_renewal_;
  Fleet fleet_;
  Policies default_policies_{std::string()};
  GetaddrinfoResolver default_resolver_;
  NameCache names_;
  Containment containment_;
  EvidenceHub evidence_;
  // Capture and the calls on stored evidence. Uses host_actions_ but is destroyed after it:
  // the captures it still waits for are answered while host_actions_ shuts down.
  std::unique_ptr<EvidenceService> evidence_service_;
  // Sends host actions; after the members it uses (destroyed first: answers waiting calls).
  std::unique_ptr<HostActions> host_actions_;
  // Sessions, processes and connections (after host_actions_, which it uses).
  std::unique_ptr<HostOperations> host_operations_;
  // What playbooks decide, carried out by the services above; the signals' thread stops
  // before they go.
  std::unique_ptr<ServiceActuator> actuator_;
  std::unique_ptr<SignalService> signals_;
  std::unique_ptr<IntegrationService> integrations_;
  std::unique_ptr<EnrollmentService> enrollment_;
  std::unique_ptr<EnrollmentRpc> enrollment_rpc_;
  std::unique_ptr<grpc::Server> enroll_server_;  // serves enrollment_rpc_ alone
  std::unique_ptr<AgentChannelService> agent_service_;
  std::unique_ptr<OperatorService> operator_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Scheduler> timers_;   // sweep
  std::unique_ptr<Scheduler> io_;       // store flush
  int port_ = 0;
  int enroll_port_ = 0;
  bool stopped_ = false;
};

}  // namespace bulkhead::controller
