#include "controller/rpc/translate.h"

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "controller/rpc/audit.h"
#include "controller/rpc/evidence.h"
#include "controller/service/record_text.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

std::vector<std::string> strings(const google::protobuf::RepeatedPtrField<std::string>& items) {
  return {items.begin(), items.end()};
}

// The oneof's one target; none set leaves all three empty, which the service refuses.
struct TargetFields {
  std::vector<std::string> hosts;
  std::string selector;
  bool all = false;
};

TargetFields targetsOf(const v1::Targets& t) {
  switch (t.target_case()) {
    case v1::Targets::kHosts: return {.hosts = strings(t.hosts().ids())};
    case v1::Targets::kSelector: return {.selector = t.selector()};
    case v1::Targets::kAll: return {.all = t.all()};
    case v1::Targets::TARGET_NOT_SET: break;
  }
  return {};
}

}  // namespace

ListHostsRequest fromProto(const v1::ListHostsRequest& req) {
  return ListHostsRequest{.selector = req.selector()};
}

GetHostRequest fromProto(const v1::GetHostRequest& req) {
  return GetHostRequest{.host = req.host()};
}

ListAuditRequest fromProto(const v1::ListAuditRequest& req) {
  return ListAuditRequest{.before_id = req.before_id(), .limit = req.limit()};
}

IsolateRequest fromProto(const v1::IsolateRequest& req) {
  TargetFields t = targetsOf(req.targets());
  return IsolateRequest{.hosts = std::move(t.hosts),
                        .selector = std::move(t.selector),
                        .all = t.all,
                        .yes = req.yes(),
                        .exempt_sets = strings(req.exempt_sets()),
                        .no_default_exemptions = req.no_default_exemptions(),
                        .ttl_ms = req.ttl_ms(),
                        .dry_run = req.dry_run(),
                        .reason = req.reason(),
                        .wait_ms = req.wait_ms()};
}

CaptureRequest fromProto(const v1::CaptureRequest& req) {
  return CaptureRequest{.host = req.host(),
                        .reason = req.reason(),
                        .collector_time_limit_ms = req.collector_time_limit_ms(),
                        .max_binary_bytes = req.max_binary_bytes(),
                        .wait_ms = req.wait_ms()};
}

ListEvidenceRequest fromProto(const v1::ListEvidenceRequest& req) {
  return ListEvidenceRequest{.host = req.host(), .offset = req.offset()};
}

ReleaseRequest fromProto(const v1::ReleaseRequest& req) {
  TargetFields t = targetsOf(req.targets());
  return ReleaseRequest{.hosts = std::move(t.hosts),
                        .selector = std::move(t.selector),
                        .all = t.all,
                        .yes = req.yes(),
                        .reason = req.reason(),
                        .wait_ms = req.wait_ms()};
}

BlockRequest fromProto(const v1::BlockRequest& req) {
  TargetFields t = targetsOf(req.targets());
  const v1::BlockMatch& m = req.match();
  return BlockRequest{.hosts = std::move(t.hosts),
                      .selector = std::move(t.selector),
                      .all = t.all,
                      .yes = req.yes(),
                      .remote_cidr = m.remote_cidr(),
                      .protocol = m.protocol(),
                      .port = m.port(),
                      .direction = m.direction(),
                      .ttl_ms = req.ttl_ms(),
                      .reason = req.reason(),
                      .wait_ms = req.wait_ms()};
}

UnblockRequest fromProto(const v1::UnblockRequest& req) {
  TargetFields t = targetsOf(req.targets());
  const v1::BlockMatch& m = req.match();
  return UnblockRequest{.hosts = std::move(t.hosts),
                        .selector = std::move(t.selector),
                        .all = t.all,
                        .yes = req.yes(),
                        .remote_cidr = m.remote_cidr(),
                        .protocol = m.protocol(),
                        .port = m.port(),
                        .direction = m.direction(),
                        .reason = req.reason(),
                        .wait_ms = req.wait_ms()};
}

ListBlocksRequest fromProto(const v1::ListBlocksRequest& req) {
  return ListBlocksRequest{.host = req.host()};
}

ListSessionsRequest fromProto(const v1::ListSessionsRequest& req) {
  return ListSessionsRequest{.host = req.host(), .wait_ms = req.wait_ms()};
}

KillSessionsRequest fromProto(const v1::KillSessionsRequest& req) {
  return KillSessionsRequest{
      .host = req.host(), .match = req.match(), .reason = req.reason(), .wait_ms = req.wait_ms()};
}

KillProcessRequest fromProto(const v1::KillProcessRequest& req) {
  return KillProcessRequest{
      .host = req.host(), .match = req.match(), .reason = req.reason(), .wait_ms = req.wait_ms()};
}

KillConnectionsRequest fromProto(const v1::KillConnectionsRequest& req) {
  return KillConnectionsRequest{.host = req.host(),
                                .remote_cidr = req.remote_cidr(),
                                .port = req.port(),
                                .reason = req.reason(),
                                .wait_ms = req.wait_ms()};
}

v1::AuditRecord toProto(const AuditEntry& row) {
  v1::AuditRecord r;
  r.set_id(row.id);
  r.set_at_unix_ms(row.at_unix_ms);
  r.set_operator_(row.operator_name);
  r.set_action(row.action);
  r.set_target(row.target);
  r.set_reason(row.reason);
  r.set_outcome(row.outcome);
  r.set_detail(row.detail);
  r.set_prev_hash(row.prev_hash);
  r.set_hash(row.hash);
  r.set_mac(row.mac);
  const AuditReading reading = readAuditText(row.action, row.outcome);
  r.set_action_type(reading.action);
  r.set_phase(reading.phase);
  r.set_outcome_type(reading.outcome);
  return r;
}

v1::EvidenceRecord toProto(const EvidenceRow& row) {
  v1::EvidenceRecord out;
  EvidenceHub::toProto(row, nullptr, &out);
  return out;
}

v1::EvidenceRecord toProto(const StoredEvidence& evidence) {
  v1::EvidenceRecord out;
  EvidenceHub::toProto(evidence.row, &evidence.custody, &out);
  return out;
}

v1::VerifyEvidenceResponse toProto(const EvidenceVerification& verification) {
  v1::VerifyEvidenceResponse out;
  for (const auto& p : verification.problems) {
    auto* problem = out.add_problems();
    problem->set_file(p.file);
    problem->set_problem(p.problem);
  }
  out.set_files_checked(verification.files_checked);
  out.set_ok(verification.ok);
  *out.mutable_record() = toProto(verification.evidence);
  return out;
}

v1::ShowEvidenceResponse toProto(const ShownEvidence& shown) {
  v1::ShowEvidenceResponse out;
  out.set_summary_json(
      shown.summary.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  *out.mutable_record() = toProto(shown.evidence);
  return out;
}

ContainmentDone finishWith(v1::ContainmentResponse* resp, grpc::ServerUnaryReactor* reactor) {
  return [resp, reactor](const absl::Status& status, ContainmentResult result) {
    for (auto& o : result.outcomes) *resp->add_outcomes() = std::move(o);
    for (auto& w : result.warnings) resp->add_warnings(std::move(w));
    reactor->Finish(toGrpcStatus(status));
  };
}

BlocksDone finishWith(v1::ListBlocksResponse* resp, grpc::ServerUnaryReactor* reactor) {
  return [resp, reactor](const absl::Status& status, std::vector<BlockEntry> blocks) {
    for (auto& b : blocks) {
      v1::BlockEntry* e = resp->add_entries();
      *e->mutable_block() = std::move(b.block);
      e->set_fleet_wide(b.fleet_wide);
      e->set_host_id(std::move(b.host_id));
      e->set_remaining_ms(b.remaining_ms);
    }
    reactor->Finish(toGrpcStatus(status));
  };
}

HostActionDone finishWith(v1::HostActionResponse* resp, grpc::ServerUnaryReactor* reactor) {
  return [resp, reactor](const absl::Status& status, HostActionResult result) {
    resp->set_host_id(std::move(result.host_id));
    resp->set_ok(result.ok);
    resp->set_refused(result.refused);
    resp->set_error(std::move(result.error));
    if (auto* k = std::get_if<v1::KillConnectionsResult>(&result.output)) {
      *resp->mutable_kill_connections() = std::move(*k);
    } else if (auto* l = std::get_if<v1::ListSessionsResult>(&result.output)) {
      *resp->mutable_list_sessions() = std::move(*l);
    } else if (auto* p = std::get_if<v1::KillProcessesResult>(&result.output)) {
      *resp->mutable_kill_processes() = std::move(*p);
    }
    reactor->Finish(toGrpcStatus(status));
  };
}

}  // namespace bulkhead::controller
