#include "controller/rpc/server.h"

#include <spdlog/spdlog.h>

#include "bulkhead/v1/agent.grpc.pb.h"
#include "common/format.h"
#include "controller/rpc/agent_stream.h"
#include "controller/rpc/call_metrics.h"
#include "controller/webhook/formats.h"

namespace bulkhead::controller {

class ControllerServer::AgentChannelService final
    : public bulkhead::v1::AgentChannel::CallbackService {
 public:
  AgentChannelService(Fleet* fleet, EvidenceHub* evidence) : fleet_(fleet), evidence_(evidence) {}
  using bulkhead::v1::AgentChannel::CallbackService::Connect;   // keep the sync overload visible
  using bulkhead::v1::AgentChannel::CallbackService::UploadEvidence;
  grpc::ServerBidiReactor<bulkhead::v1::AgentMessage, bulkhead::v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override {
    return AgentStream::start(fleet_, ctx);
  }
  grpc::ServerReadReactor<bulkhead::v1::EvidenceUpload>* UploadEvidence(
      grpc::CallbackServerContext* ctx, bulkhead::v1::EvidenceReceipt* receipt) override {
    return evidence_->upload(ctx, receipt);
  }

 private:
  Fleet* fleet_;
  EvidenceHub* evidence_;
};

ControllerServer::ControllerServer(const Clock& clock, Store& store, ServerOptions options)
    : options_(std::move(options)),
      fleet_(clock, store, [this] {
        FleetOptions fleet = options_.fleet;
        if (fleet.signals == nullptr) fleet.signals = &agent_signals_;
        if (fleet.renewal == nullptr) fleet.renewal = &agent_renewal_;
        if (fleet.metrics == nullptr) fleet.metrics = options_.metrics;
        return fleet;
      }()),
      names_(clock, options_.policies != nullptr ? *options_.policies : default_policies_,
             options_.resolver != nullptr ? *options_.resolver : default_resolver_, options_.names),
      containment_(clock, store, fleet_,
                   options_.policies != nullptr ? *options_.policies : default_policies_, names_,
                   options_.containment),
      evidence_(clock, store, fleet_, options_.evidence),
      host_actions_(std::make_unique<HostActions>(clock, fleet_, HostActionsOptions{})),
      host_operations_(std::make_unique<HostOperations>(clock, store, fleet_, *host_actions_)) {
  evidence_service_ =
      std::make_unique<EvidenceService>(clock, store, fleet_, *host_actions_, &evidence_);
  actuator_ = std::make_unique<ServiceActuator>(containment_, *host_operations_,
                                                *evidence_service_);
  SignalServiceOptions signal_options = options_.signals;
  signal_options.blocks.controller_ips.clear();
  for (const auto& e : options_.containment.endpoints) {
    signal_options.blocks.controller_ips.push_back(e.ip());
  }
  signal_options.blocks.protected_cidrs = options_.containment.protected_cidrs;
  signal_options.blocks.confirm_prefix_v4 = options_.containment.block_confirm_prefix_v4;
  signal_options.blocks.confirm_prefix_v6 = options_.containment.block_confirm_prefix_v6;
  signals_ = std::make_unique<SignalService>(clock, store, fleet_, *actuator_,
                                             std::move(signal_options));
  agent_signals_.target = signals_.get();
  integrations_ = std::make_unique<IntegrationService>(
      clock, store, [](const std::string& format, const std::string& config_json) {
        auto parsed = webhook::parseFormat(format);
        if (!parsed.ok()) return parsed.status();
        return webhook::parseFormatConfig(*parsed, config_json).status();
      });
  EnrollmentOptions enrollment = options_.enrollment;
  enrollment.controller_addresses.clear();
  for (const auto& e : options_.containment.endpoints) {
    enrollment.controller_addresses.push_back(e.ip().find(':') != std::string::npos
                                                  ? fmt::format("[{}]:{}", e.ip(), e.port())
                                                  : fmt::format("{}:{}", e.ip(), e.port()));
  }
  enrollment_ = std::make_unique<EnrollmentService>(clock, store, std::move(enrollment));
  enrollment_rpc_ = std::make_unique<EnrollmentRpc>(*enrollment_);
  agent_renewal_.target = enrollment_.get();
  agent_service_ = std::make_unique<AgentChannelService>(&fleet_, &evidence_);
  operator_service_ = std::make_unique<OperatorService>(
      clock, store, fleet_, containment_, *host_operations_, *evidence_service_, *signals_,
      *integrations_, *enrollment_, options_.audit_signer ? &*options_.audit_signer : nullptr,
      options_.notifications);
}

void setAgentTransportArguments(grpc::ServerBuilder& builder) {
  // Agents ping every 30-60 s (keepalive); accept pings down to 10 s apart without data, so a
  // well-configured agent never collects strikes, and drop a peer after 3 strikes.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 3);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Our own pings find dead TCP connections that the heartbeat timeout would find later.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  // Without the probe gRPC 1.51 would announce 64 KiB; the lookahead announces the window the
  // probe starts from (SETTINGS_INITIAL_WINDOW_SIZE, and the connection's window with it).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kStreamWindowBytes);
}

absl::StatusOr<std::unique_ptr<ControllerServer>> ControllerServer::start(const Clock& clock,
                                                                          Store& store,
                                                                          ServerOptions options) {
  std::unique_ptr<ControllerServer> s(new ControllerServer(clock, store, std::move(options)));
  if (auto st = s->fleet_.restore(); !st.ok()) {
    return absl::Status(st.code(), fmt::format("restoring from the store: {}", st.message()));
  }
  if (auto st = s->evidence_.init(); !st.ok()) return st;
  if (auto st = s->startEnrollment(); !st.ok()) return st;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(s->options_.listen, s->options_.credentials, &s->port_);
  // gRPC sets SO_REUSEPORT by default: a second controller started by mistake on the same
  // port would then take a share of the agents and operators, each half of the fleet seeing a
  // different database. Without it, the second one fails to start.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(s->agent_service_.get());
  builder.RegisterService(s->operator_service_.get());
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  if (s->options_.metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> timers;
    timers.push_back(std::make_unique<CallMetricsFactory>(*s->options_.metrics));
    builder.experimental().SetInterceptorCreators(std::move(timers));
  }
  setAgentTransportArguments(builder);
  for (const auto& [name, value] : s->options_.channel_args) {
    builder.AddChannelArgument(name, value);
  }
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    s->server_.reset();
    return absl::UnavailableError(
        fmt::format("--listen: cannot listen on {} (address in use or not local?)",
                    s->options_.listen));
  }
  s->timers_ = std::make_unique<Scheduler>("bh-timers");
  s->io_ = std::make_unique<Scheduler>("bh-store");
  Fleet* fleet = &s->fleet_;
  s->timers_->every(s->options_.sweep_interval, [fleet] { fleet->sweep(); });
  s->io_->every(s->options_.flush_interval, [fleet] {
    if (auto st = fleet->flush(); !st.ok()) spdlog::error("store flush failed: {}", st);
  });
  return s;
}

absl::Status ControllerServer::startEnrollment() {
  if (options_.enroll_listen.empty()) return absl::OkStatus();
  if (!enrollment_->enabled()) {
    return absl::InvalidArgumentError("--enroll-listen: needs --ca-key (the fleet CA's key)");
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.enroll_listen, options_.enroll_credentials, &enroll_port_);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(enrollment_rpc_.get());
  builder.SetMaxReceiveMessageSize(kMaxEnrollMessageBytes);
  enroll_server_ = builder.BuildAndStart();
  if (!enroll_server_ || enroll_port_ == 0) {
    enroll_server_.reset();
    return absl::UnavailableError(
        fmt::format("--enroll-listen: cannot listen on {} (address in use or not local?)",
                    options_.enroll_listen));
  }
  std::vector<std::string> addresses;
  for (const auto& e : options_.containment.endpoints) {
    addresses.push_back(e.ip().find(':') != std::string::npos
                            ? fmt::format("[{}]:{}", e.ip(), enroll_port_)
                            : fmt::format("{}:{}", e.ip(), enroll_port_));
  }
  spdlog::info("enrollment listener on {} (port {}); tokens name {}", options_.enroll_listen,
               enroll_port_,
               addresses.empty() ? "no address" : fmt::format("{}", fmt::join(addresses, ", ")));
  enrollment_->setEnrollAddresses(std::move(addresses));
  return absl::OkStatus();
}

ControllerServer::~ControllerServer() { shutdown(); }

void ControllerServer::shutdown(std::chrono::milliseconds grace) {
  if (stopped_) return;
  stopped_ = true;
  if (enroll_server_) {
    enroll_server_->Shutdown(std::chrono::system_clock::now() + grace);
    enroll_server_->Wait();
  }
  fleet_.closeAllStreams(grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller shutting down"));
  signals_->shutdown();      // no new signals; the ones taken are decided and recorded
  integrations_->flushRefusals();  // refused webhook requests counted but not yet audited
  containment_.shutdown();   // finishes calls still waiting for acknowledgements
  host_actions_->shutdown();   // and those waiting for an agent's command result
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + grace);
    server_->Wait();
  }
  evidence_.shutdown();   // after the server: uploads finish on its I/O thread
  if (timers_) timers_->stop();
  if (io_) io_->stop();
  if (auto st = fleet_.flush(); !st.ok()) spdlog::error("final store flush failed: {}", st);
}

}  // namespace bulkhead::controller
