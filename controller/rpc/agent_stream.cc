#include "controller/rpc/agent_stream.h"

#include <spdlog/spdlog.h>

#include "common/callback_order.h"
#include "common/format.h"
#include "common/tls/tls.h"
#include "controller/rpc/fleet.h"

namespace bulkhead::controller {

using bulkhead::v1::AgentMessage;
using bulkhead::v1::ControllerMessage;

AgentStream::AgentStream(Fleet* fleet, grpc::CallbackServerContext* ctx)
    : fleet_(fleet), ctx_(ctx), peer_(ctx->peer()) {}

grpc::ServerBidiReactor<AgentMessage, ControllerMessage>* AgentStream::start(
    Fleet* fleet, grpc::CallbackServerContext* ctx) {
  auto stream = std::make_shared<AgentStream>(fleet, ctx);
  const ReactorTurn turn(stream.get());
  stream->self_ = stream;
  auto auth = ctx->auth_context();
  auto id = auth ? peerIdentity(*auth) : absl::UnauthenticatedError("no client certificate");
  if (!id.ok()) {
    spdlog::warn("agent channel: refused {}: {}", stream->peer_, id.status());
    stream->finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                fmt::format("{}", id.status())));
    return stream.get();
  }
  if (id->kind != PeerKind::kAgent) {
    spdlog::warn("agent channel: refused {}: certificate OU={} \"{}\" is not an agent",
                 stream->peer_, peerKindName(id->kind), id->name);
    stream->finish(grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        fmt::format("certificate OU={} is not an agent identity", peerKindName(id->kind))));
    return stream.get();
  }
  if (PeerGate* gate = fleet->gate(); gate != nullptr) {
    if (auto admitted = gate->admit(*id); !admitted.ok()) {
      spdlog::warn("agent channel: refused {}: {}", stream->peer_, admitted.message());
      stream->finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                  std::string(admitted.message())));
      return stream.get();
    }
  }
  stream->host_id_ = id->name;
  stream->cert_serial_ = id->serial;
  stream->cert_not_after_unix_ = id->not_after_unix;
  operationStarts(&stream->in_);
  stream->StartRead(&stream->in_);
  return stream.get();
}

bool AgentStream::enqueue(ControllerMessage msg) {
  const ReactorTurn turn(this);
  std::lock_guard lock(mu_);
  if (finish_requested_) return false;
  if (msg.has_desired_state()) {
    uint64_t gen = msg.desired_state().generation();
    if (gen < newest_state_generation_) return false;   // a newer state is already queued
    newest_state_generation_ = gen;
    // Replace a desired state still waiting (not the one being written at the front).
    for (size_t i = writing_ ? 1 : 0; i < queue_.size(); ++i) {
      if (queue_[i].has_desired_state()) {
        queue_[i] = std::move(msg);
        return true;
      }
    }
  }
  if (queue_.size() >= kMaxQueuedMessages) {
    finish_requested_ = true;
    finish_status_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                  "agent is not reading its stream (send queue full)");
    return true;   // kick() issues the finish once the outstanding write completes
  }
  queue_.push_back(std::move(msg));
  return true;
}

void AgentStream::kick() {
  const ReactorTurn turn(this);
  const ControllerMessage* next = nullptr;
  bool do_finish = false;
  grpc::Status status;
  {
    std::lock_guard lock(mu_);
    if (writing_ || finish_called_) return;
    if (!queue_.empty() && !finish_requested_) {
      writing_ = true;
      next = &queue_.front();
    } else if (finish_requested_) {
      finish_called_ = true;
      do_finish = true;
      status = finish_status_;
    }
  }
  if (next != nullptr) StartWrite(next);
  if (do_finish) Finish(status);
}

void AgentStream::finish(const grpc::Status& status) {
  const ReactorTurn turn(this);
  {
    std::lock_guard lock(mu_);
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = status;
    if (writing_) return;   // OnWriteDone finishes
    finish_called_ = true;
  }
  Finish(status);
}

void AgentStream::OnWriteDone(bool ok) {
  const ReactorTurn turn(this);
  const ControllerMessage* next = nullptr;
  bool do_finish = false;
  grpc::Status status;
  {
    std::lock_guard lock(mu_);
    queue_.pop_front();
    if (!ok) {
      queue_.clear();
      if (!finish_requested_) {
        finish_requested_ = true;
        finish_status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed");
      }
    }
    if (!queue_.empty() && !finish_requested_) {
      next = &queue_.front();
    } else {   // nothing to write, or finishing: messages still queued are dropped
      writing_ = false;
      if (finish_requested_ && !finish_called_) {
        finish_called_ = true;
        do_finish = true;
        status = finish_status_;
      }
    }
  }
  if (next != nullptr) StartWrite(next);
  if (do_finish) Finish(status);
}

void AgentStream::OnReadDone(bool ok) {
  const ReactorTurn turn(this);
  operationDone(&in_);   // the last read's callback (hello_seen_, in_) ran on another thread
  if (!ok) {
    // The agent closed its side or the call broke: end our side too.
    finish(grpc::Status::OK);
    return;
  }
  if (!hello_seen_) {
    if (!in_.has_hello()) {
      finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the first message on the agent channel must be hello"));
      return;
    }
    hello_seen_ = true;
    grpc::Status s = fleet_->onHello(shared_from_this(), in_.hello());
    if (!s.ok()) {
      finish(s);
      return;
    }
  } else {
    if (in_.has_signal()) onSignal(in_.signal());
    if (in_.has_renew()) onRenew(in_.renew());
    fleet_->onMessage(*this, in_);  // a signal, too, counts as a sign of life
  }
  {
    std::lock_guard lock(mu_);
    if (finish_requested_) return;   // no more reads once we are ending the stream
  }
  operationStarts(&in_);
  StartRead(&in_);
}

std::string checkForwardedSignal(const v1::Signal& signal) {
  if (signal.addresses_size() > kMaxSignalAddresses) {
    return fmt::format("signal.addresses: {} addresses, at most {}", signal.addresses_size(),
                       kMaxSignalAddresses);
  }
  if (signal.rule().size() > kMaxSignalRuleBytes) {
    return fmt::format("signal.rule: {} bytes, at most {}", signal.rule().size(),
                       kMaxSignalRuleBytes);
  }
  if (signal.labels_size() > kMaxSignalLabels) {
    return fmt::format("signal.labels: {} labels, at most {}", signal.labels_size(),
                       kMaxSignalLabels);
  }
  return "";
}

void AgentStream::onSignal(const v1::SignalReport& report) {
  const uint64_t report_id = report.report_id();
  auto refuse = [this, report_id](std::string error) {
    spdlog::warn("host {}: signal report {} refused: {}", host_id_, report_id, error);
    ControllerMessage m;
    m.mutable_signal_receipt()->set_report_id(report_id);
    m.mutable_signal_receipt()->set_error(std::move(error));
    send(std::move(m));
  };
  SignalIntake* intake = fleet_->signals();
  if (intake == nullptr) return refuse("signals are not enabled on this controller");
  if (std::string why = checkForwardedSignal(report.signal()); !why.empty()) {
    return refuse(std::move(why));
  }
  if (signals_in_flight_.fetch_add(1) >= kMaxSignalsInFlight) {
    signals_in_flight_.fetch_sub(1);
    return refuse(fmt::format("too many signals in flight on this stream (at most {}); retry",
                              kMaxSignalsInFlight));
  }
  v1::Signal signal = report.signal();
  signal.set_host(host_id_);  // the certificate's host, whatever the agent claimed
  SignalDelivery from{fmt::format("host:{}", host_id_), host_id_};
  // `done` may run inline (on this reaction) or later on any thread, even after OnDone: the
  // shared_ptr keeps the stream alive, and send() drops the receipt once the stream finishes.
  intake->submit(std::move(from), std::move(signal),
                 [self = shared_from_this(), report_id](absl::StatusOr<SignalOutcome> outcome) {
                   ControllerMessage m;
                   auto* receipt = m.mutable_signal_receipt();
                   receipt->set_report_id(report_id);
                   if (outcome.ok()) {
                     receipt->set_signal_id(outcome->signal_id);
                     receipt->set_disposition(outcome->disposition);
                   } else {
                     std::string error(outcome.status().message());
                     receipt->set_error(error.empty() ? outcome.status().ToString() : error);
                   }
                   self->signals_in_flight_.fetch_sub(1);
                   self->send(std::move(m));
                 });
}

void AgentStream::onRenew(const v1::RenewCertificate& request) {
  ControllerMessage m;
  auto* answer = m.mutable_renewal();
  answer->set_request_id(request.request_id());
  AgentRenewal* renewal = fleet_->renewal();
  if (renewal == nullptr) {
    answer->set_error("certificate renewal is not enabled on this controller");
  } else {
    // Signing and one audit row: short enough for this reaction.
    const auto host = fleet_->getHost(host_id_);
    const std::string tenant =
        host && !host->host().tenant().empty() ? host->host().tenant() : kDefaultTenant;
    auto cert = renewal->renew(host_id_, tenant, cert_serial_, request.csr_pem());
    if (cert.ok()) {
      answer->set_cert_pem(*std::move(cert));
    } else {
      answer->set_error(std::string(cert.status().message()));
    }
  }
  send(std::move(m));
}

void AgentStream::OnCancel() {
  const ReactorTurn turn(this);
  finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

void AgentStream::OnDone() {
  afterEveryTurn(this);
  fleet_->onStreamDone(this);
  // The last reference held on behalf of gRPC: may delete this.
  std::shared_ptr<AgentStream> self = std::move(self_);
}

}  // namespace bulkhead::controller
