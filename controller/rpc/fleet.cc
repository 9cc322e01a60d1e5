#include "controller/rpc/fleet.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "common/format.h"
#include "common/protocol_version.h"
#include "common/text.h"
#include "controller/core/blocks.h"
#include "controller/rpc/agent_stream.h"
#include "controller/rpc/audit.h"
#include "controller/service/agent_admission.h"
#include "controller/service/record_text.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

// The tamper event recorded when an agent reports a generation the controller never issued.
std::string overclaim(const char* what, uint64_t claimed, uint64_t issued) {
  return fmt::format(
      "agent reported {} {}, above generation {}, the newest this controller "
      "issued for the host: ignored",
      what, claimed, issued);
}

// The largest serialized ReplicaEvent sent: base64 of it stays under the 7,000 bytes a
// ReplicaLink payload may hold.
constexpr size_t kMaxReplicaEvent = 5000;
// Larger events go in pieces, at most this many (2.5 MB).
constexpr size_t kMaxReplicaEventPieces = 500;
// Commands relayed here awaiting the agent's answer, at most.
constexpr size_t kMaxRelayed = 10000;

HostInfo hostInfoFromSummary(const v1::HostSummary& s) {
  HostInfo h;
  h.host_id = s.host_id();
  h.hostname = s.hostname();
  h.addresses = {s.addresses().begin(), s.addresses().end()};
  h.labels = {s.labels().begin(), s.labels().end()};
  h.reported_labels = {s.reported_labels().begin(), s.reported_labels().end()};
  h.labels_from_enrollment = s.labels_from_enrollment();
  h.labels_set_by = s.labels_set_by();
  h.tenant = s.tenant();
  h.os = s.os();
  h.agent_version = s.agent_version();
  h.first_seen_unix_ms = s.first_seen_unix_ms();
  h.last_seen_unix_ms = s.last_seen_unix_ms();
  h.enforced_generation = s.enforced_generation();
  h.ruleset_hash = s.ruleset_hash();
  return h;
}

// The most controller-own audit rows (hosts offline) kept for the next flush while the store
// fails; beyond it they are logged only.
constexpr size_t kMaxPendingRows = 100000;

}  // namespace

Fleet::Deferred::~Deferred() {
  for (auto& s : kick) s->kick();
  for (auto& [s, status] : finish) s->finish(status);
}

Fleet::Fleet(const Clock& clock, Store& store, FleetOptions options)
    : clock_(clock),
      store_(store),
      options_(options),
      registry_(clock, options.heartbeat_timeout),
      pieces_(kMaxReplicaEventPieces) {}

Fleet::~Fleet() = default;

absl::Status Fleet::restore() {
  auto hosts = store_.loadHosts();
  if (!hosts.ok()) return hosts.status();
  // The stored labels of an enrolled host are its token's; say so until its agent is back.
  for (HostInfo& h : *hosts) {
    auto enrolled = store_.findEnrollment(h.host_id);
    if (!enrolled.ok()) return enrolled.status();
    h.labels_from_enrollment = enrolled->has_value();
    if (enrolled->has_value()) h.tenant = (*enrolled)->tenant;
    auto set = store_.findHostLabels(h.host_id);
    if (!set.ok()) return set.status();
    if (set->has_value()) {
      h.labels = (*set)->labels;
      h.labels_set_by = (*set)->set_by;
    }
  }
  auto desired = store_.loadDesiredStates();
  if (!desired.ok()) return desired.status();
  std::lock_guard lock(mu_);
  registry_.restore(*std::move(hosts));
  desired_ = *std::move(desired);
  // The fleet-wide blocks of each tenant: Containment's, not hosts.
  std::erase_if(desired_,
                [](const auto& row) { return tenantOfFleetStateKey(row.first).has_value(); });
  return absl::OkStatus();
}

grpc::Status Fleet::onHello(const std::shared_ptr<AgentStream>& stream, const v1::Hello& hello) {
  const std::string& host_id = stream->hostId();
  RevocationCheck is_revoked;
  if (PeerGate* gate = options_.gate; gate != nullptr) {
    is_revoked = [gate](const std::string& serial) { return gate->isRevoked(serial); };
  }
  auto admitted =
      admitAgentHello({.host_id = host_id, .serial = stream->certSerial()}, hello, is_revoked);
  if (!admitted.ok()) {
    spdlog::warn("agent channel: refused {} (host {}): {}", stream->peer(), host_id,
                 admitted.status().message());
    return toGrpcStatus(admitted.status());
  }
  HelloInfo info = *std::move(admitted);
  // A host enrolled with a join token has the token's labels: the controller's truth, not the
  // agent's claim (which is only shown).
  auto enrolled = store_.findEnrollment(host_id);
  if (!enrolled.ok()) {
    spdlog::error("hello from {}: cannot read its enrollment: {}", host_id, enrolled.status());
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the controller cannot read its store");
  }
  if (enrolled->has_value()) {
    info.reported_labels = std::move(info.labels);
    info.labels = (*enrolled)->labels;
    info.labels_from_enrollment = true;
    info.tenant = (*enrolled)->tenant;
  }
  // Labels an admin set win over both (`bulkhead label`).
  auto set = store_.findHostLabels(host_id);
  if (!set.ok()) {
    spdlog::error("hello from {}: cannot read its labels: {}", host_id, set.status());
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the controller cannot read its store");
  }
  if (set->has_value()) {
    if (!info.labels_from_enrollment) info.reported_labels = std::move(info.labels);
    info.labels = (*set)->labels;
    info.labels_set_by = (*set)->set_by;
  }

  // With other controllers on the database, the host's newest state may be one of theirs (an
  // agent failing over from another controller brings it).
  std::optional<v1::DesiredState> stored;
  if (options_.link != nullptr) {
    auto states = store_.loadDesiredStatesOf({host_id});
    if (!states.ok()) {
      spdlog::error("hello from {}: cannot read its desired state: {}", host_id, states.status());
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the controller cannot read its store");
    }
    if (auto it = states->find(host_id); it != states->end()) stored = it->second;
  }

  Deferred after;
  std::lock_guard lock(mu_);
  if (closing_) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller is shutting down");
  }
  if (stored && stored->generation() > issuedGenerationLocked(host_id)) desired_[host_id] = *stored;
  const uint64_t issued = issuedGenerationLocked(host_id);
  const bool overclaimed = !acceptedGeneration(info.enforced_generation, issued);
  if (overclaimed) {
    // What the controller last knew it enforces stands (0 when that is not bounded either).
    const HostInfo* known = registry_.find(host_id);
    info.enforced_generation =
        known != nullptr && acceptedGeneration(known->enforced_generation, issued)
            ? known->enforced_generation
            : 0;
  }
  uint64_t superseded = 0;
  uint64_t session = registry_.connect(host_id, info, &superseded);
  stream->setSession(session);
  if (overclaimed) {
    flagLocked(host_id, session,
               overclaim("enforced generation", hello.enforced_generation(), issued));
  }
  auto it = streams_.find(host_id);
  if (it != streams_.end() && it->second != stream) {
    spdlog::info("host {}: new stream from {} replaces the one from {}", host_id, stream->peer(),
                 it->second->peer());
    after.finish.emplace_back(it->second,
                              grpc::Status(grpc::StatusCode::ABORTED,
                                           "replaced by a newer stream of the same host"));
  }
  streams_[host_id] = stream;
  spdlog::info("host {} connected from {} (enforced generation {})", host_id, stream->peer(),
               hello.enforced_generation());
  remote_.erase(host_id);
  announceStreamsLocked({host_id}, true);

  v1::ControllerMessage welcome;
  welcome.mutable_welcome()->mutable_protocol()->set_major(kProtocolVersion.major);
  welcome.mutable_welcome()->mutable_protocol()->set_minor(kProtocolVersion.minor);
  welcome.mutable_welcome()->set_host_id(host_id);
  welcome.mutable_welcome()->set_heartbeat_interval_ms(
      static_cast<uint32_t>(options_.heartbeat_interval.count()));
  welcome.mutable_welcome()->set_controller_time_unix_ms(clock_.nowUnixMs());
  stream->enqueue(std::move(welcome));
  if (auto d = desired_.find(host_id); d != desired_.end()) {
    v1::ControllerMessage state;
    *state.mutable_desired_state() = agentWireState(d->second);
    stream->enqueue(std::move(state));
  }
  const uint64_t enforced = info.enforced_generation;
  answerEnforcedLocked(host_id, enforced);
  if (enforced > 0) announceAckLocked(host_id, nullptr, enforced);
  after.kick.push_back(stream);
  return grpc::Status::OK;
}

void Fleet::onMessage(AgentStream& stream, const v1::AgentMessage& msg) {
  const std::string& host_id = stream.hostId();
  std::lock_guard lock(mu_);
  bool current = true;
  switch (msg.body_case()) {
    case v1::AgentMessage::kHeartbeat: {
      const uint64_t enforced = msg.heartbeat().enforced_generation();
      const uint64_t issued = issuedGenerationLocked(host_id);
      if (!acceptedGeneration(enforced, issued)) {
        current = registry_.touch(host_id, stream.session());
        if (current) {
          flagLocked(host_id, stream.session(), overclaim("enforced generation", enforced, issued));
        }
        break;
      }
      const HostInfo* before = registry_.find(host_id);
      const uint64_t was = before != nullptr ? before->enforced_generation : 0;
      current = registry_.setEnforced(host_id, stream.session(), enforced,
                                      msg.heartbeat().ruleset_hash());
      if (!current) break;
      answerEnforcedLocked(host_id, enforced);
      if (enforced != was) announceAckLocked(host_id, nullptr, enforced);
      break;
    }
    case v1::AgentMessage::kCommandResult: {
      current = registry_.touch(host_id, stream.session());
      if (!current) break;
      const auto& r = msg.command_result();
      commandResultLocked(host_id, r);
      if (auto relayed = relayed_.find(r.command_id()); relayed != relayed_.end()) {
        v1::ReplicaEvent event;
        event.mutable_result()->set_host_id(host_id);
        *event.mutable_result()->mutable_result() = r;
        relayed_.erase(relayed);
        sendReplicaLocked(std::move(event));
      }
      break;
    }
    case v1::AgentMessage::kProgress:
      current = registry_.touch(host_id, stream.session());
      if (current && progress_listener_) progress_listener_(host_id, msg.progress());
      if (current && relayed_.contains(msg.progress().command_id())) {
        v1::ReplicaEvent event;
        event.mutable_result()->set_host_id(host_id);
        *event.mutable_result()->mutable_progress() = msg.progress();
        sendReplicaLocked(std::move(event));
      }
      break;
    case v1::AgentMessage::kStateReport: {
      const uint64_t issued = issuedGenerationLocked(host_id);
      v1::StateReport claimed = msg.state_report();
      if (!acceptedGeneration(claimed.generation(), issued)) {
        // About a generation never issued: answers nothing, records nothing.
        current = registry_.touch(host_id, stream.session());
        if (current) {
          flagLocked(host_id, stream.session(),
                     overclaim("a state report about generation", claimed.generation(), issued));
        }
        break;
      }
      if (!acceptedGeneration(claimed.enforced_generation(), issued)) {
        // About an issued generation, but claiming a newer one in force (an agent that holds a
        // state this controller never issued refuses older ones): its failure still answers,
        // the claimed generation stands for nothing.
        const HostInfo* known = registry_.find(host_id);
        const uint64_t before = known != nullptr ? known->enforced_generation : 0;
        flagLocked(host_id, stream.session(),
                   overclaim("enforced generation", claimed.enforced_generation(), issued));
        claimed.set_enforced_generation(acceptedGeneration(before, issued) ? before : 0);
      }
      current = registry_.setReport(host_id, stream.session(), claimed);
      if (current) {
        const auto& r = claimed;
        answerReportLocked(host_id, r);
        announceAckLocked(host_id, &r, 0);
        if (options_.metrics != nullptr) {
          int64_t applied_us = 0;
          for (const auto& step : r.steps()) applied_us += std::max<int64_t>(0, step.duration_us());
          options_.metrics->agentApplied(r.ok(), static_cast<double>(applied_us) / 1e6,
                                         r.flows_cut());
        }
        if (r.ok()) {
          spdlog::info("host {}: enforced generation {} (ruleset {}, {} flows cut)", host_id,
                       r.enforced_generation(), r.ruleset_hash().substr(0, 12), r.flows_cut());
        } else {
          spdlog::warn("host {}: generation {} failed: {} (left {})", host_id, r.generation(),
                       r.error(), r.left_closed() ? "closed" : "open");
        }
      }
      break;
    }
    case v1::AgentMessage::kTamper:
      current = registry_.addTamper(host_id, stream.session(), msg.tamper());
      if (current) {
        if (options_.metrics != nullptr) options_.metrics->tamperEvent(host_id);
        spdlog::warn("host {}: tamper event: {} (restored: {})", host_id, msg.tamper().what(),
                     msg.tamper().restored());
      }
      break;
    case v1::AgentMessage::kHello:
      spdlog::warn("host {}: second hello on one stream ignored", host_id);
      current = registry_.touch(host_id, stream.session());
      break;
    default:
      current = registry_.touch(host_id, stream.session());
      break;
  }
  if (!current) {
    spdlog::debug("host {}: message on a superseded stream ignored", host_id);
  }
}

void Fleet::onStreamDone(AgentStream* stream) {
  std::lock_guard lock(mu_);
  if (stream->hostId().empty()) return;
  auto it = streams_.find(stream->hostId());
  if (it != streams_.end() && it->second.get() == stream) {
    streams_.erase(it);
    spdlog::info("host {} disconnected ({})", stream->hostId(), stream->peer());
    announceStreamsLocked({stream->hostId()}, false);
  }
  // (A stream the sweep already timed out, or one a newer stream superseded, is no news.)
  const bool was_online = registry_.session(stream->hostId()) == stream->session();
  registry_.disconnect(stream->hostId(), stream->session());
  if (was_online) noteOfflineLocked(stream->hostId(), "its stream ended");
}

void Fleet::noteOfflineLocked(const std::string& host_id, const std::string& why) {
  if (closing_) return;  // the controller's own shutdown: every stream ends
  const auto d = desired_.find(host_id);
  if (d == desired_.end() || !d->second.isolation().enabled()) return;
  if (pending_rows_.size() >= kMaxPendingRows) {
    spdlog::error("host {}: isolated host offline ({}): not audited, {} rows wait already", host_id,
                  why, pending_rows_.size());
    return;
  }
  const HostInfo* info = registry_.find(host_id);
  pending_rows_.push_back(AuditEntry{
      .at_unix_ms = clock_.nowUnixMs(),
      .operator_name = "controller",
      .action = kHostOfflineAction,
      .target = host_id,
      .outcome = "ok",
      .detail = fmt::format("isolated host offline: {}; its isolation stays in force on the "
                            "host, unseen, until its agent reconnects",
                            why),
      .tenant = info != nullptr ? info->tenant : std::string(kDefaultTenant)});
}

void Fleet::sweep() {
  Deferred after;
  std::lock_guard lock(mu_);
  for (const auto& expired : registry_.sweep()) {
    spdlog::warn("host {} offline: no message for more than {} ms", expired.host_id,
                 options_.heartbeat_timeout.count());
    noteOfflineLocked(expired.host_id, fmt::format("no message for more than {} ms",
                                                   options_.heartbeat_timeout.count()));
    auto it = streams_.find(expired.host_id);
    announceStreamsLocked({expired.host_id}, false);
    if (it != streams_.end() && it->second->session() == expired.session) {
      after.finish.emplace_back(it->second,
                                grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                             "no heartbeat within the heartbeat timeout"));
    }
  }
}

absl::Status Fleet::flush() {
  HostRegistry::Dirty dirty;
  std::vector<AuditEntry> offline;
  std::vector<PeerIdentity> expiring;
  if (options_.gate != nullptr) expiring = options_.gate->takeExpiring();
  std::vector<AuditEntry> rows;
  {
    std::lock_guard lock(mu_);
    dirty = registry_.takeDirty();
    offline = std::exchange(pending_rows_, {});
    rows = offline;
    const int64_t now = clock_.nowUnixMs();
    auto tenantOf = [this](const std::string& host) {
      const HostInfo* info = registry_.find(host);
      return info != nullptr ? info->tenant : std::string(kDefaultTenant);
    };
    // One row per host for its tamper events since the last flush (a host under attack may
    // report many: the row counts them and tells the last).
    std::map<std::string, std::vector<const v1::TamperEvent*>> tamper_by_host;
    for (const TamperRecord& t : dirty.tamper) tamper_by_host[t.host_id].push_back(&t.event);
    for (const auto& [host, events] : tamper_by_host) {
      const bool restored = std::all_of(events.begin(), events.end(),
                                        [](const v1::TamperEvent* e) { return e->restored(); });
      const v1::TamperEvent& last = *events.back();
      rows.push_back(AuditEntry{
          .at_unix_ms = now,
          .operator_name = "agent:" + host,
          .action = kTamperAction,
          .target = host,
          .outcome = restored ? "ok" : "error: not restored",
          .detail = escapeNonPrintable(fmt::format(
              "{} tamper event{}; last at {}: {} ({})", events.size(),
              events.size() == 1 ? "" : "s", utcTimeText(last.at_unix_ms()), last.what(),
              last.restored() ? fmt::format("restored in {} us", last.restore_latency_us())
                              : std::string("not restored"))),
          .tenant = tenantOf(host)});
    }
    for (const PeerIdentity& p : expiring) {
      const bool agent = p.kind == PeerKind::kAgent;
      rows.push_back(AuditEntry{
          .at_unix_ms = now,
          .operator_name = "controller",
          .action = kCertificateExpiringAction,
          .target = p.name,
          .outcome = "ok",
          .detail = escapeNonPrintable(fmt::format(
              "the {} certificate of \"{}\" (serial {}) expires {} (in {} h){}",
              peerKindName(p.kind), p.name, p.serial, utcTimeText(p.not_after_unix * 1000),
              (p.not_after_unix * 1000 - now) / 3'600'000,
              agent ? "; its agent renews it on its own: if it cannot, issue a new one"
                    : "; renew it with bulkhead renew (the CLI also does when it is due)")),
          .tenant = agent ? tenantOf(p.name) : std::string(kDefaultTenant)});
    }
  }
  if (dirty.hosts.empty() && dirty.tamper.empty() && rows.empty()) return absl::OkStatus();
  absl::Status s = store_.saveHosts(dirty.hosts, dirty.tamper, rows);
  if (!s.ok()) {
    if (options_.gate != nullptr) options_.gate->restoreExpiring(std::move(expiring));
    std::lock_guard lock(mu_);
    registry_.restoreDirty(std::move(dirty));
    offline.insert(offline.end(), std::make_move_iterator(pending_rows_.begin()),
                   std::make_move_iterator(pending_rows_.end()));
    pending_rows_ = std::move(offline);
  }
  return s;
}

void Fleet::closeAllStreams(const grpc::Status& status) {
  Deferred after;
  std::lock_guard lock(mu_);
  closing_ = true;
  for (auto& [id, s] : streams_) after.finish.emplace_back(s, status);
}

std::vector<std::string> Fleet::closeRevokedStreams() {
  std::vector<std::string> ended;
  if (options_.gate == nullptr) return ended;
  Deferred after;
  std::lock_guard lock(mu_);
  for (auto& [id, s] : streams_) {
    if (!options_.gate->isRevoked(s->certSerial())) continue;
    ended.push_back(id);
    after.finish.emplace_back(
        s, grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        fmt::format("the agent certificate of \"{}\" (serial {}) is revoked", id,
                                    s->certSerial())));
  }
  return ended;
}

size_t Fleet::streamCount() {
  std::lock_guard lock(mu_);
  return streams_.size();
}

void Fleet::answerLocked(const std::string& host,
                         const std::function<bool(const Waiter&, v1::HostOutcome*)>& answer) {
  auto it = waiters_.find(host);
  if (it == waiters_.end()) return;
  auto& list = it->second;
  for (size_t i = 0; i < list.size();) {
    Waiter& w = list[i];
    if (w.op->settled || !answer(w, &w.op->result.outcomes[w.index])) {
      ++i;
      continue;
    }
    std::shared_ptr<PendingOp> op = w.op;
    list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
    if (--op->waiting == 0 && op_ready_) op_ready_(op);
  }
  if (list.empty()) waiters_.erase(it);
}

void Fleet::commandResultLocked(const std::string& host, const v1::CommandResult& r) {
  if (command_listener_) command_listener_(host, r);
  answerLocked(host, [&r](const Waiter& w, v1::HostOutcome* out) {
    if (w.command_id.empty() || w.command_id != r.command_id()) return false;
    if (r.ok()) {
      out->set_state(v1::HostOutcome::STATE_DRY_RUN);
      out->set_ruleset_text(r.preview().ruleset_text());
      for (const auto& f : r.preview().would_cut()) *out->add_flows_cut() = f;
      for (const auto& f : r.preview().would_keep()) *out->add_flows_kept() = f;
    } else {
      out->set_state(v1::HostOutcome::STATE_FAILED);
      out->set_error(r.error().empty() ? "dry run failed on the agent" : r.error());
    }
    return true;
  });
}

void Fleet::answerReportLocked(const std::string& host, const v1::StateReport& r) {
  answerLocked(host, [&r](const Waiter& w, v1::HostOutcome* out) {
    if (!w.command_id.empty()) return false;
    switch (ackFromReport(r, w.generation)) {
      case AckResult::kNone: return false;
      case AckResult::kEnforced: out->set_state(v1::HostOutcome::STATE_ENFORCED); break;
      case AckResult::kFailed:
        out->set_state(v1::HostOutcome::STATE_FAILED);
        out->set_error(fmt::format("{} (host left {})",
                                   r.error().empty() ? "enforcement failed" : r.error(),
                                   r.left_closed() ? "closed" : "open"));
        break;
    }
    *out->mutable_report() = r;
    return true;
  });
}

void Fleet::answerEnforcedLocked(const std::string& host, uint64_t enforced) {
  answerLocked(host, [enforced](const Waiter& w, v1::HostOutcome* out) {
    if (!w.command_id.empty() || ackFromEnforced(enforced, w.generation) != AckResult::kEnforced) {
      return false;
    }
    out->set_state(v1::HostOutcome::STATE_ENFORCED);
    out->set_error("");
    return true;
  });
}

// --- several controllers on one database ---

void Fleet::sendReplicaLocked(v1::ReplicaEvent event) {
  if (options_.link == nullptr) return;
  event.set_replica(options_.replica);
  std::string bytes = event.SerializeAsString();
  if (bytes.size() <= kMaxReplicaEvent) {
    options_.link->send(absl::Base64Escape(bytes));
    return;
  }
  // Too large for one notice: in pieces, which the others put together (in order: one
  // sender's notices arrive in the order they were sent).
  if (bytes.size() > kMaxReplicaEventPieces * kMaxReplicaEvent) {
    spdlog::error("replicas: an event of {} bytes is too large to send: dropped", bytes.size());
    return;
  }
  for (const v1::ReplicaEvent& piece :
       splitReplicaEvent(options_.replica, next_piece_key_++, bytes, kMaxReplicaEvent)) {
    options_.link->send(absl::Base64Escape(piece.SerializeAsString()));
  }
}

void Fleet::announceStreamsLocked(const std::vector<std::string>& hosts, bool up) {
  if (options_.link == nullptr) return;
  v1::ReplicaEvent event;
  v1::ReplicaHosts* batch = up ? event.mutable_up() : event.mutable_down();
  for (const auto& host : hosts) {
    v1::HostSummary* s = batch->add_hosts();
    if (const HostInfo* h = registry_.find(host); up && h != nullptr) {
      *s = summaryLocked(*h);
    } else {
      s->set_host_id(host);
    }
    if (event.ByteSizeLong() >= kMaxReplicaEvent) {
      sendReplicaLocked(event);
      batch->clear_hosts();
    }
  }
  if (batch->hosts_size() > 0) sendReplicaLocked(std::move(event));
}

void Fleet::announceAckLocked(const std::string& host, const v1::StateReport* report,
                              uint64_t enforced) {
  if (options_.link == nullptr) return;
  v1::ReplicaEvent event;
  v1::ReplicaAck* ack = event.mutable_ack();
  ack->set_host_id(host);
  ack->set_enforced_generation(enforced);
  if (report != nullptr) {
    *ack->mutable_report() = *report;
    // The steps are detail; the answer fits without them.
    if (event.ByteSizeLong() >= kMaxReplicaEvent) ack->mutable_report()->clear_steps();
  }
  sendReplicaLocked(std::move(event));
}

void Fleet::announceStreamsHereLocked() {
  std::vector<std::string> here;
  for (const auto& [host, stream] : streams_) {
    if (registry_.online(host)) here.push_back(host);
  }
  announceStreamsLocked(here, true);
}

bool Fleet::remoteOnlineLocked(const std::string& host) const { return remote_.contains(host); }

void Fleet::onReplicaEvent(const std::string& payload) {
  std::string bytes;
  v1::ReplicaEvent event;
  if (!absl::Base64Unescape(payload, &bytes) || !event.ParseFromString(bytes) ||
      event.replica().empty()) {
    spdlog::warn("replicas: an event that does not parse ignored ({} bytes)", payload.size());
    return;
  }
  if (event.replica() == options_.replica) return;
  Deferred after;
  std::lock_guard lock(mu_);
  replicaEventLocked(event, after);
}

void Fleet::replicaEventLocked(const v1::ReplicaEvent& event, Deferred& after) {
  const std::string& from = event.replica();
  if (!replicas_seen_.contains(from)) spdlog::info("replicas: controller \"{}\" serves", from);
  replicas_seen_[from] = clock_.nowUnixMs();
  if (replicas_forgotten_.erase(from) > 0) {
    spdlog::warn("replicas: controller \"{}\" is heard from again: asking where hosts stream",
                 from);
    v1::ReplicaEvent sync;
    sync.mutable_sync();
    sendReplicaLocked(std::move(sync));
  }
  switch (event.body_case()) {
    case v1::ReplicaEvent::kPart: {
      const v1::ReplicaPart& part = event.part();
      const std::optional<std::string> whole = pieces_.add(from, part);
      if (!whole) return;
      v1::ReplicaEvent inner;
      if (!inner.ParseFromString(*whole) || inner.replica() != from || inner.has_part()) {
        spdlog::warn("replicas: an event in {} pieces from \"{}\" does not parse", part.count(),
                     from);
        return;
      }
      replicaEventLocked(inner, after);
      return;
    }
    case v1::ReplicaEvent::kUp:
      for (const v1::HostSummary& s : event.up().hosts()) {
        const std::string& host = s.host_id();
        remote_[host] = from;
        remote_enforced_[host] = s.enforced_generation();
        if (auto it = streams_.find(host); it != streams_.end()) {
          // Its agent left this controller for that one: this stream is a dead one.
          after.finish.emplace_back(
              it->second, grpc::Status(grpc::StatusCode::ABORTED,
                                       fmt::format("the host streams to \"{}\" now", from)));
          registry_.disconnect(host, it->second->session());
          streams_.erase(it);
        }
        if (!registry_.online(host)) registry_.restore({hostInfoFromSummary(s)});
      }
      break;
    case v1::ReplicaEvent::kDown:
      for (const v1::HostSummary& s : event.down().hosts()) {
        if (auto it = remote_.find(s.host_id()); it != remote_.end() && it->second == from) {
          remote_.erase(it);
        }
      }
      break;
    case v1::ReplicaEvent::kAck: {
      const v1::ReplicaAck& ack = event.ack();
      remote_enforced_[ack.host_id()] =
          ack.has_report() ? ack.report().enforced_generation() : ack.enforced_generation();
      if (ack.has_report()) {
        answerReportLocked(ack.host_id(), ack.report());
      } else {
        answerEnforcedLocked(ack.host_id(), ack.enforced_generation());
      }
      break;
    }
    case v1::ReplicaEvent::kSync: {
      announceStreamsHereLocked();
      break;
    }
    case v1::ReplicaEvent::kCommand: {
      const std::string& host = event.command().host_id();
      auto s = streams_.find(host);
      if (s == streams_.end() || !registry_.online(host)) return;  // not here: theirs times out
      if (relayed_.size() >= kMaxRelayed) {
        spdlog::warn("replicas: {} relayed commands never answered: forgotten", relayed_.size());
        relayed_.clear();
      }
      v1::ControllerMessage m;
      *m.mutable_command() = event.command().command();
      const std::string id = m.command().id();
      if (s->second->enqueue(std::move(m))) {
        relayed_[id] = from;
        after.kick.push_back(s->second);
      }
      break;
    }
    case v1::ReplicaEvent::kResult: {
      const v1::ReplicaResult& r = event.result();
      if (r.has_result()) commandResultLocked(r.host_id(), r.result());
      if (r.has_progress() && progress_listener_) progress_listener_(r.host_id(), r.progress());
      break;
    }
    default: break;
  }
}

void Fleet::onDesiredChanged(const std::string& payload) {
  std::vector<std::string> words = absl::StrSplit(payload, ' ', absl::SkipEmpty());
  if (words.size() < 2 || words[0] == options_.replica) return;
  words.erase(words.begin());
  reloadDesiredStates(words);
  std::function<void()> listener;
  {
    std::lock_guard lock(mu_);
    listener = fleet_blocks_listener_;
  }
  if (listener && std::any_of(words.begin(), words.end(), [](const std::string& w) {
        return tenantOfFleetStateKey(w).has_value();
      })) {
    listener();
  }
}

void Fleet::setFleetBlocksListener(std::function<void()> listener) {
  std::lock_guard lock(mu_);
  fleet_blocks_listener_ = std::move(listener);
}

void Fleet::reloadDesiredStates(const std::vector<std::string>& hosts) {
  std::vector<std::string> wanted;
  for (const auto& h : hosts) {
    if (!tenantOfFleetStateKey(h)) wanted.push_back(h);
  }
  if (wanted.empty()) return;
  auto states = store_.loadDesiredStatesOf(wanted);
  if (!states.ok()) {
    spdlog::error("replicas: cannot read the desired states of {} hosts: {}", wanted.size(),
                  states.status());
    return;
  }
  Deferred after;
  std::lock_guard lock(mu_);
  for (auto& [host, state] : *states) {
    if (state.generation() <= issuedGenerationLocked(host)) continue;
    desired_[host] = state;
    auto s = streams_.find(host);
    if (s == streams_.end() || !registry_.online(host)) continue;
    v1::ControllerMessage m;
    *m.mutable_desired_state() = agentWireState(state);
    if (s->second->enqueue(std::move(m))) after.kick.push_back(s->second);
  }
}

void Fleet::onReplicaLinkUp() {
  {
    std::lock_guard lock(mu_);
    v1::ReplicaEvent sync;
    sync.mutable_sync();
    sendReplicaLocked(std::move(sync));
    announceStreamsHereLocked();
  }
  auto all = store_.loadDesiredStates();
  if (!all.ok()) {
    spdlog::error("replicas: cannot read the desired states: {}", all.status());
    return;
  }
  std::vector<std::string> hosts;
  for (const auto& [host, state] : *all) hosts.push_back(host);
  reloadDesiredStates(hosts);
}

void Fleet::replicaTick() {
  std::lock_guard lock(mu_);
  v1::ReplicaEvent alive;
  alive.mutable_alive();
  sendReplicaLocked(std::move(alive));
  const int64_t cutoff = clock_.nowUnixMs() - options_.replica_timeout.count();
  for (auto it = replicas_seen_.begin(); it != replicas_seen_.end();) {
    if (it->second >= cutoff) {
      ++it;
      continue;
    }
    const std::string gone = it->first;
    size_t hosts = std::erase_if(remote_, [&gone](const auto& r) { return r.second == gone; });
    spdlog::warn(
        "replicas: nothing from controller \"{}\" for {} ms: its {} hosts count as "
        "offline until it is heard from again or their agents reconnect",
        gone, options_.replica_timeout.count(), hosts);
    pieces_.forget(gone);
    replicas_forgotten_.insert(gone);
    it = replicas_seen_.erase(it);
  }
}

uint64_t Fleet::issuedGenerationLocked(const std::string& host) const {
  auto it = desired_.find(host);
  return it == desired_.end() ? 0 : it->second.generation();
}

void Fleet::flagLocked(const std::string& host, uint64_t session, const std::string& what) {
  // Once per distinct claim in a row: a heartbeat repeating it is not a new event.
  if (const HostInfo* h = registry_.find(host);
      h != nullptr && !h->tamper_events.empty() && h->tamper_events.back().what() == what) {
    return;
  }
  spdlog::warn("host {}: {}", host, what);
  v1::TamperEvent e;
  e.set_at_unix_ms(clock_.nowUnixMs());
  e.set_what(what);
  if (registry_.addTamper(host, session, e) && options_.metrics != nullptr) {
    options_.metrics->tamperEvent(host);
  }
}

void Fleet::setOpReadyHandler(std::function<void(std::shared_ptr<PendingOp>)> handler) {
  std::lock_guard lock(mu_);
  op_ready_ = std::move(handler);
}

std::map<std::string, TargetHost> Fleet::targets() {
  std::lock_guard lock(mu_);
  std::map<std::string, TargetHost> out;
  for (const HostInfo* h : registry_.list()) {
    out[h->host_id] =
        TargetHost{h->labels, h->addresses, onlineAnywhereLocked(h->host_id), h->tenant};
  }
  return out;
}

std::map<std::string, v1::DesiredState> Fleet::desiredStates(const std::vector<std::string>& hosts) {
  std::lock_guard lock(mu_);
  std::map<std::string, v1::DesiredState> out;
  for (const auto& h : hosts) {
    auto it = desired_.find(h);
    // The generation is the controller's own: what an agent reports never numbers a change.
    out[h] = it == desired_.end() ? v1::DesiredState() : it->second;
  }
  return out;
}

std::map<std::string, v1::DesiredState> Fleet::allDesiredStates() {
  std::lock_guard lock(mu_);
  return desired_;
}

bool Fleet::publish(const std::shared_ptr<PendingOp>& op, const std::vector<std::string>& order,
                    const std::map<std::string, v1::DesiredState>& states,
                    const std::map<std::string, std::vector<std::string>>& sets) {
  Deferred after;
  std::lock_guard lock(mu_);
  for (const auto& [host, state] : states) desired_[host] = state;
  for (const auto& host : order) {
    auto st = states.find(host);
    if (st == states.end()) continue;
    const uint64_t generation = st->second.generation();
    std::shared_ptr<AgentStream> stream;
    if (auto s = streams_.find(host); s != streams_.end() && registry_.online(host)) {
      stream = s->second;
      v1::ControllerMessage m;
      *m.mutable_desired_state() = agentWireState(st->second);
      if (stream->enqueue(std::move(m))) after.kick.push_back(stream);
      else stream.reset();   // the stream is ending: the state goes out on reconnect
    }
    if (!op) continue;
    v1::HostOutcome* out = &op->result.outcomes.emplace_back();
    out->set_host_id(host);
    out->set_generation(generation);
    if (auto n = sets.find(host); n != sets.end()) {
      for (const auto& name : n->second) out->add_exemption_sets(name);
    }
    if (!stream && remoteOnlineLocked(host)) {
      // The controller its agent streams to read the state at the commit's notice; its
      // agent's answer comes back on the link.
      if (auto e = remote_enforced_.find(host);
          e != remote_enforced_.end() &&
          ackFromEnforced(e->second, generation) == AckResult::kEnforced) {
        out->set_state(v1::HostOutcome::STATE_ENFORCED);
        continue;
      }
      out->set_state(v1::HostOutcome::STATE_PENDING);
      waiters_[host].push_back(Waiter{op, op->result.outcomes.size() - 1, generation, ""});
      ++op->waiting;
      continue;
    }
    if (!stream) {
      out->set_state(v1::HostOutcome::STATE_PENDING);
      out->set_error("host offline: will apply when its agent reconnects");
      continue;
    }
    out->set_state(v1::HostOutcome::STATE_PENDING);
    waiters_[host].push_back(Waiter{op, op->result.outcomes.size() - 1, generation, ""});
    ++op->waiting;
  }
  if (op && op->waiting > 0) pending_ops_[op->id] = op;
  return !op || op->waiting == 0;
}

bool Fleet::preview(const std::shared_ptr<PendingOp>& op, const std::vector<std::string>& order,
                    const std::map<std::string, v1::DesiredState>& states,
                    const std::map<std::string, std::vector<std::string>>& sets) {
  Deferred after;
  std::lock_guard lock(mu_);
  for (const auto& host : order) {
    auto st = states.find(host);
    if (st == states.end()) continue;
    v1::HostOutcome* out = &op->result.outcomes.emplace_back();
    out->set_host_id(host);
    out->set_generation(st->second.generation());
    if (auto n = sets.find(host); n != sets.end()) {
      for (const auto& name : n->second) out->add_exemption_sets(name);
    }
    auto s = streams_.find(host);
    const bool here = s != streams_.end() && registry_.online(host);
    const bool elsewhere = !here && options_.link != nullptr && remoteOnlineLocked(host);
    if (!here && !elsewhere) {
      out->set_state(v1::HostOutcome::STATE_FAILED);
      out->set_error("host offline: a dry run needs its agent connected");
      continue;
    }
    v1::ControllerMessage m;
    v1::Command* cmd = m.mutable_command();
    cmd->set_id(fmt::format("preview-{}-{}", op->id, next_command_++));
    cmd->set_deadline_unix_ms(clock_.nowUnixMs() + op->wait.count());
    cmd->set_reason(op->reason);
    cmd->set_requested_by(op->operator_name);
    *cmd->mutable_preview_state()->mutable_state() = agentWireState(st->second);
    std::string id = cmd->id();
    if (elsewhere) {
      v1::ReplicaEvent event;
      event.mutable_command()->set_host_id(host);
      *event.mutable_command()->mutable_command() = std::move(*cmd);
      sendReplicaLocked(std::move(event));
      out->set_state(v1::HostOutcome::STATE_DRY_RUN);
      waiters_[host].push_back(Waiter{op, op->result.outcomes.size() - 1, 0, std::move(id)});
      ++op->waiting;
      continue;
    }
    if (!s->second->enqueue(std::move(m))) {
      out->set_state(v1::HostOutcome::STATE_FAILED);
      out->set_error("host disconnecting: a dry run needs its agent connected");
      continue;
    }
    after.kick.push_back(s->second);
    out->set_state(v1::HostOutcome::STATE_DRY_RUN);
    waiters_[host].push_back(Waiter{op, op->result.outcomes.size() - 1, 0, std::move(id)});
    ++op->waiting;
  }
  if (op->waiting > 0) pending_ops_[op->id] = op;
  return op->waiting == 0;
}

bool Fleet::sendCommand(const std::string& host, v1::Command command, std::string* why) {
  Deferred after;
  std::lock_guard lock(mu_);
  auto s = streams_.find(host);
  if (s == streams_.end() || !registry_.online(host)) {
    if (options_.link != nullptr && remoteOnlineLocked(host)) {
      // The controller its agent streams to sends it and relays the answer.
      v1::ReplicaEvent event;
      event.mutable_command()->set_host_id(host);
      *event.mutable_command()->mutable_command() = std::move(command);
      sendReplicaLocked(std::move(event));
      return true;
    }
    *why = "host offline: its agent must be connected";
    return false;
  }
  v1::ControllerMessage m;
  *m.mutable_command() = std::move(command);
  if (!s->second->enqueue(std::move(m))) {
    *why = "host disconnecting: its agent must be connected";
    return false;
  }
  after.kick.push_back(s->second);
  return true;
}

void Fleet::setCommandListener(
    std::function<void(const std::string&, const v1::CommandResult&)> listener) {
  std::lock_guard lock(mu_);
  command_listener_ = std::move(listener);
}

void Fleet::setProgressListener(
    std::function<void(const std::string&, const v1::CommandProgress&)> listener) {
  std::lock_guard lock(mu_);
  progress_listener_ = std::move(listener);
}

bool Fleet::settle(const std::shared_ptr<PendingOp>& op, v1::HostOutcome::State open_state,
                   const std::string& open_error) {
  std::lock_guard lock(mu_);
  if (op->settled) return false;
  op->settled = true;
  pending_ops_.erase(op->id);
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    auto& list = it->second;
    for (size_t i = 0; i < list.size();) {
      if (list[i].op == op) {
        v1::HostOutcome* out = &op->result.outcomes[list[i].index];
        out->set_state(open_state);
        out->set_error(open_error);
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    it = list.empty() ? waiters_.erase(it) : std::next(it);
  }
  op->waiting = 0;
  return true;
}

std::vector<std::shared_ptr<PendingOp>> Fleet::pendingOps() {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<PendingOp>> out;
  for (auto& [id, op] : pending_ops_) out.push_back(op);
  return out;
}

v1::HostSummary Fleet::summaryLocked(const HostInfo& h) const {
  v1::HostSummary s;
  s.set_host_id(h.host_id);
  s.set_hostname(h.hostname);
  for (const auto& a : h.addresses) s.add_addresses(a);
  for (const auto& [k, v] : h.labels) (*s.mutable_labels())[k] = v;
  s.set_labels_from_enrollment(h.labels_from_enrollment);
  s.set_tenant(h.tenant);
  s.set_labels_set_by(h.labels_set_by);
  for (const auto& [k, v] : h.reported_labels) (*s.mutable_reported_labels())[k] = v;
  s.set_os(h.os);
  s.set_agent_version(h.agent_version);
  s.set_online(onlineAnywhereLocked(h.host_id));
  s.set_last_seen_unix_ms(h.last_seen_unix_ms);
  s.set_first_seen_unix_ms(h.first_seen_unix_ms);
  s.set_connected_since_unix_ms(s.online() ? h.connected_since_unix_ms : 0);
  s.set_enforced_generation(h.enforced_generation);
  s.set_ruleset_hash(h.ruleset_hash);
  if (auto st = streams_.find(h.host_id); st != streams_.end() && s.online()) {
    s.set_cert_not_after_unix_ms(st->second->certNotAfterUnix() * 1000);
    s.set_cert_expiring(options_.gate != nullptr &&
                        options_.gate->expiresSoon(st->second->certNotAfterUnix()));
  }
  if (auto d = desired_.find(h.host_id); d != desired_.end()) {
    s.set_desired_generation(d->second.generation());
    s.set_isolated(d->second.isolation().enabled());
  }
  return s;
}

std::vector<v1::HostSummary> Fleet::listHosts(const Labels& selector) {
  std::lock_guard lock(mu_);
  std::vector<v1::HostSummary> out;
  for (const HostInfo* h : registry_.list(selector)) out.push_back(summaryLocked(*h));
  return out;
}

std::optional<v1::HostStatus> Fleet::getHost(const std::string& host_id) {
  std::lock_guard lock(mu_);
  const HostInfo* h = registry_.find(host_id);
  if (h == nullptr) return std::nullopt;
  v1::HostStatus st;
  *st.mutable_host() = summaryLocked(*h);
  if (auto d = desired_.find(host_id); d != desired_.end()) *st.mutable_desired() = d->second;
  if (h->last_report.generation() != 0 || h->last_report.applied_at_unix_ms() != 0) {
    *st.mutable_last_report() = h->last_report;
  }
  for (const auto& e : h->tamper_events) *st.add_tamper_events() = e;
  return st;
}

bool Fleet::applyLabels(const std::string& host_id, const Labels& labels,
                        const std::string& set_by) {
  std::lock_guard lock(mu_);
  return registry_.setLabels(host_id, labels, set_by);
}

bool Fleet::online(const std::string& host_id) {
  std::lock_guard lock(mu_);
  return onlineAnywhereLocked(host_id);
}

size_t Fleet::blocksInForce(int64_t now_unix_ms) {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [host, state] : desired_) {
    if (tenantOfFleetStateKey(host)) continue;
    for (const auto& b : state.blocks()) {
      if (b.expires_at_unix_ms() == 0 || b.expires_at_unix_ms() > now_unix_ms) ++n;
    }
  }
  return n;
}

}  // namespace bulkhead::controller
