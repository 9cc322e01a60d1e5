#include "controller/rpc/translate.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/json.h"
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

// Reading evidence::summarizeMembers()'s document, whose fields have one type each (a text is
// a string or null, an integer an int64 or null): a null or absent member leaves the optional
// field unset. The getters never throw, so a document of another shape gives empty fields.
using nlohmann::json;

void forEachIn(const json& doc, std::string_view key, const std::function<void(const json&)>& fn) {
  if (const json* items = jsonArray(doc, key)) {
    for (const json& item : *items) fn(item);
  }
}

template <typename Message>
void setText(const json& doc, std::string_view key, Message* out,
             void (Message::*set)(const std::string&)) {
  if (std::optional<std::string> value = jsonString(doc, key)) (out->*set)(*value);
}

template <typename Message>
void setInt(const json& doc, std::string_view key, Message* out, void (Message::*set)(int64_t)) {
  if (std::optional<int64_t> value = jsonInt(doc, key)) (out->*set)(*value);
}

void addFinding(const json& f, v1::EvidenceSummary::Finding* out) {
  out->set_kind(jsonStringOr(f, "kind"));
  out->set_severity(jsonStringOr(f, "severity"));
  setInt(f, "pid", out, &v1::EvidenceSummary::Finding::set_pid);
  // Present (even null) means the finding names the process's comm / exe.
  out->set_comm_listed(f.is_object() && f.contains("comm"));
  setText(f, "comm", out, &v1::EvidenceSummary::Finding::set_comm);
  out->set_exe_listed(f.is_object() && f.contains("exe"));
  setText(f, "exe", out, &v1::EvidenceSummary::Finding::set_exe);
  out->set_detail(jsonStringOr(f, "detail"));
}

void addDeleted(const json& d, v1::EvidenceSummary::DeletedExecutable* out) {
  using M = v1::EvidenceSummary::DeletedExecutable;
  out->set_pid(jsonIntOr(d, "pid"));
  setText(d, "comm", out, &M::set_comm);
  setText(d, "exe", out, &M::set_exe);
  setText(d, "exe_sha256", out, &M::set_exe_sha256);
  setText(d, "recovered", out, &M::set_recovered);
  out->set_memfd(jsonBoolOr(d, "memfd"));
}

void addRemote(const json& c, v1::EvidenceSummary::RemoteConnection* out) {
  using M = v1::EvidenceSummary::RemoteConnection;
  setInt(c, "pid", out, &M::set_pid);
  setText(c, "comm", out, &M::set_comm);
  setText(c, "exe", out, &M::set_exe);
  out->set_protocol(jsonStringOr(c, "protocol"));
  out->set_local(jsonStringOr(c, "local"));
  out->set_remote(jsonStringOr(c, "remote"));
  out->set_state(jsonStringOr(c, "state"));
  setText(c, "note", out, &M::set_note);
}

void addListener(const json& l, v1::EvidenceSummary::UnexpectedListener* out) {
  using M = v1::EvidenceSummary::UnexpectedListener;
  setInt(l, "pid", out, &M::set_pid);
  setText(l, "comm", out, &M::set_comm);
  setText(l, "exe", out, &M::set_exe);
  out->set_protocol(jsonStringOr(l, "protocol"));
  out->set_local(jsonStringOr(l, "local"));
  out->set_why(jsonStringOr(l, "why"));
}

void addLogin(const json& l, v1::EvidenceSummary::Login* out) {
  using M = v1::EvidenceSummary::Login;
  setText(l, "user", out, &M::set_user);
  setText(l, "from", out, &M::set_from);
  setText(l, "line", out, &M::set_line);
  setInt(l, "at_unix_ms", out, &M::set_at_unix_ms);
  out->set_current(jsonBoolOr(l, "current"));
}

}  // namespace

v1::EvidenceSummary toEvidenceSummary(const json& summary) {
  using S = v1::EvidenceSummary;
  S out;
  setText(summary, "host_id", &out, &S::set_host_id);
  setText(summary, "capture_id", &out, &S::set_capture_id);
  setInt(summary, "collected_at_unix_ms", &out, &S::set_collected_at_unix_ms);
  forEachIn(summary, "findings", [&](const json& f) { addFinding(f, out.add_findings()); });
  forEachIn(summary, "deleted_executables",
            [&](const json& d) { addDeleted(d, out.add_deleted_executables()); });
  forEachIn(summary, "remote_connections",
            [&](const json& c) { addRemote(c, out.add_remote_connections()); });
  forEachIn(summary, "unexpected_listeners",
            [&](const json& l) { addListener(l, out.add_unexpected_listeners()); });
  forEachIn(summary, "recent_logins", [&](const json& l) { addLogin(l, out.add_recent_logins()); });
  const json* failed_logins = jsonObject(summary, "failed_logins");
  const json no_object = json::object();
  const json& failed = failed_logins != nullptr ? *failed_logins : no_object;
  out.mutable_failed_logins()->set_count(jsonUintOr(failed, "count"));
  forEachIn(failed, "top_sources", [&](const json& t) {
    S::FailedLoginSource* source = out.mutable_failed_logins()->add_top_sources();
    source->set_from(jsonStringOr(t, "from"));
    source->set_count(jsonUintOr(t, "count"));
  });
  forEachIn(summary, "preload", [&](const json& p) {
    S::PreloadEntry* entry = out.add_preload();
    setText(p, "source", entry, &S::PreloadEntry::set_source);
    setText(p, "entry", entry, &S::PreloadEntry::set_entry);
  });
  forEachIn(summary, "hidden_pids", [&](const json& h) {
    S::HiddenPid* hidden = out.add_hidden_pids();
    setInt(h, "pid", hidden, &S::HiddenPid::set_pid);
    setText(h, "comm", hidden, &S::HiddenPid::set_comm);
  });
  out.set_kernel_tainted(jsonUintOr(summary, "kernel_tainted"));
  const json* collectors_doc = jsonObject(summary, "collectors");
  const json& collectors = collectors_doc != nullptr ? *collectors_doc : no_object;
  out.mutable_collectors()->set_ok(jsonUintOr(collectors, "ok"));
  forEachIn(collectors, "failed", [&](const json& c) {
    S::FailedCollector* failed_collector = out.mutable_collectors()->add_failed();
    setText(c, "collector", failed_collector, &S::FailedCollector::set_collector);
    setText(c, "status", failed_collector, &S::FailedCollector::set_status);
    setText(c, "error", failed_collector, &S::FailedCollector::set_error);
  });
  out.set_unreadable_lines(jsonUintOr(summary, "unreadable_lines"));
  const json* omitted_doc = jsonObject(summary, "omitted");
  const json& omitted = omitted_doc != nullptr ? *omitted_doc : no_object;
  S::Omitted* o = out.mutable_omitted();
  o->set_findings(jsonUintOr(omitted, "findings"));
  o->set_deleted_executables(jsonUintOr(omitted, "deleted_executables"));
  o->set_remote_connections(jsonUintOr(omitted, "remote_connections"));
  o->set_unexpected_listeners(jsonUintOr(omitted, "unexpected_listeners"));
  o->set_preload(jsonUintOr(omitted, "preload"));
  o->set_hidden_pids(jsonUintOr(omitted, "hidden_pids"));
  o->set_recent_logins(jsonUintOr(omitted, "recent_logins"));
  o->set_collectors(jsonUintOr(omitted, "collectors"));
  return out;
}

ListHostsRequest fromProto(const v1::ListHostsRequest& req) {
  return ListHostsRequest{.selector = req.selector()};
}

GetHostRequest fromProto(const v1::GetHostRequest& req) {
  return GetHostRequest{.host = req.host()};
}

SetHostLabelsRequest fromProto(const v1::SetHostLabelsRequest& req) {
  return SetHostLabelsRequest{.host = req.host(),
                              .set = {req.set().begin(), req.set().end()},
                              .remove = {req.remove().begin(), req.remove().end()},
                              .reason = req.reason()};
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
  r.set_tenant(row.tenant);
  r.set_incident(row.incident);
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

v1::ShowIncidentResponse toProto(const IncidentTimeline& timeline) {
  v1::ShowIncidentResponse out;
  *out.mutable_incident() = timeline.incident;
  for (const AuditEntry& row : timeline.records) *out.add_records() = toProto(row);
  for (const auto& [row, custody] : timeline.evidence) {
    EvidenceHub::toProto(row, &custody, out.add_evidence());
  }
  out.set_now_unix_ms(timeline.now_unix_ms);
  out.set_regulator_deadline_unix_ms(timeline.incident.detected_unix_ms() + kRegulatorDeadlineMs);
  for (const HostContainment& h : timeline.hosts) {
    v1::IncidentHost& host = *out.add_hosts();
    host.set_host_id(h.host);
    host.set_isolated_unix_ms(h.isolated_at_unix_ms);
    host.set_released_unix_ms(h.released_at_unix_ms);
    host.set_flows_cut(h.flows_cut);
  }
  return out;
}

v1::NotifyChannel toProto(const ChannelSummary& c) {
  v1::NotifyChannel out;
  out.set_name(c.name);
  out.set_type(c.type);
  out.set_tenant(c.tenant);
  out.set_destination(c.destination);
  for (const std::string& k : c.kinds) out.add_kinds(k);
  out.set_min_severity(c.min_severity);
  out.set_pending(c.pending);
  out.set_delivered(c.delivered);
  out.set_failed(c.failed);
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
  *out.mutable_summary() = toEvidenceSummary(shown.summary);
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
      e->set_tenant(std::move(b.tenant));
    }
    reactor->Finish(toGrpcStatus(status));
  };
}

HostActionDone finishWith(v1::HostActionResponse* resp, grpc::ServerUnaryReactor* reactor) {
  return [resp, reactor](const absl::Status& status, HostActionResult result) {
    resp->set_host_id(std::move(result.host_id));
    resp->set_tenant(std::move(result.tenant));
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
