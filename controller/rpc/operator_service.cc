#include "controller/rpc/operator_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "common/callback_order.h"
#include "common/certificate.h"
#include "common/format.h"
#include "common/parse.h"
#include "common/tls/tls.h"
#include "controller/rpc/audit.h"
#include "controller/rpc/chunk_writer.h"
#include "controller/rpc/translate.h"
#include "controller/service/tenancy.h"
#include "evidence/json_read.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

OperatorService::OperatorService(const Clock& clock, Store& store, Fleet& fleet,
                                 Containment& containment, HostOperations& host_operations,
                                 EvidenceService& evidence_service, SignalService& signals,
                                 IntegrationService& integrations, EnrollmentService& enrollment,
                                 const evidence::Signer* audit_signer,
                                 NotificationBackend* notifications)
    : fleet_(fleet),
      containment_(containment),
      inventory_(clock, store, fleet),
      audit_trail_(clock, store, audit_signer),
      host_operations_(host_operations),
      evidence_service_(evidence_service),
      signals_(signals),
      integrations_(integrations),
      enrollment_(enrollment),
      tenants_(clock, store),
      incidents_(
          clock, store, audit_signer, &pdf_,
          [&evidence_service](const std::string& id) { return evidence_service.bundlePath(id); }),
      notifications_(clock, store, notifications) {}

Caller OperatorService::identify(const grpc::CallbackServerContext& ctx) {
  Caller c;
  auto auth = ctx.auth_context();
  auto id = auth ? peerIdentity(*auth) : absl::UnauthenticatedError("no client certificate");
  if (!id.ok()) {
    c.audit_name = "unauthenticated";
    c.refusal = absl::UnauthenticatedError(fmt::format("{}", id.status()));
    return c;
  }
  c.audit_name = id->name;
  if (id->kind != PeerKind::kOperator) {
    c.audit_name = fmt::format("{}:{}", peerKindName(id->kind), id->name);
    c.refusal = absl::PermissionDeniedError(
        fmt::format("certificate OU={} is not an operator identity", peerKindName(id->kind)));
    return c;
  }
  if (PeerGate* gate = fleet_.gate(); gate != nullptr) {
    if (auto admitted = gate->admit(*id); !admitted.ok()) {
      spdlog::warn("operator call refused: {}", admitted.message());
      c.refusal = absl::PermissionDeniedError(admitted.message());
      return c;
    }
  }
  c.is_operator = true;
  c.role = id->role;
  c.cert_serial = id->serial;
  std::string requested;
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find(kTenantMetadata); it != metadata.end()) {
    requested.assign(it->second.data(), it->second.size());
  }
  tenants_.scopeCaller(c, requested);
  std::string incident;
  if (auto it = metadata.find(kIncidentMetadata); it != metadata.end()) {
    incident.assign(it->second.data(), it->second.size());
  }
  incidents_.scopeCaller(c, incident);
  c.incident_required_by = signals_.tenantRequiringIncident(callTenants(c));
  return c;
}

grpc::ServerUnaryReactor* OperatorService::ListHosts(grpc::CallbackServerContext* ctx,
                                                     const v1::ListHostsRequest* req,
                                                     v1::ListHostsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto hosts = inventory_.listHosts(identify(*ctx), fromProto(*req));
  if (hosts.ok()) {
    for (auto& h : *hosts) *resp->add_hosts() = std::move(h);
  }
  reactor->Finish(toGrpcStatus(hosts.status()));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::GetHost(grpc::CallbackServerContext* ctx,
                                                   const v1::GetHostRequest* req,
                                                   v1::HostStatus* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto host = inventory_.getHost(identify(*ctx), fromProto(*req));
  const absl::Status status = host.status();
  if (host.ok()) *resp = *std::move(host);
  reactor->Finish(toGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::SetHostLabels(grpc::CallbackServerContext* ctx,
                                                         const v1::SetHostLabelsRequest* req,
                                                         v1::HostSummary* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto host = inventory_.setLabels(identify(*ctx), fromProto(*req));
  const absl::Status status = host.status();
  if (host.ok()) *resp = *std::move(host);
  reactor->Finish(toGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::Isolate(grpc::CallbackServerContext* ctx,
                                                   const v1::IsolateRequest* req,
                                                   v1::ContainmentResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  containment_.isolate(identify(*ctx), fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::Release(grpc::CallbackServerContext* ctx,
                                                   const v1::ReleaseRequest* req,
                                                   v1::ContainmentResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  containment_.release(identify(*ctx), fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ListAudit(grpc::CallbackServerContext* ctx,
                                                     const v1::ListAuditRequest* req,
                                                     v1::ListAuditResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto page = audit_trail_.list(identify(*ctx), fromProto(*req),
                                [](const AuditEntry& row) { return toProto(row).ByteSizeLong(); });
  if (page.ok()) {
    for (const auto& row : page->records) *resp->add_records() = toProto(row);
    if (page->next_before_id != 0) resp->set_next_before_id(page->next_before_id);
  }
  reactor->Finish(toGrpcStatus(page.status()));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::VerifyAudit(grpc::CallbackServerContext* ctx,
                                                       const v1::VerifyAuditRequest* req,
                                                       v1::VerifyAuditResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto v = audit_trail_.verify(identify(*ctx), req->checkpoint_id(), req->checkpoint_hash());
  if (v.ok()) {
    resp->set_ok(v->ok);
    resp->set_rows(v->rows);
    resp->set_first_bad_id(v->first_bad_id);
    resp->set_problem(v->problem);
    resp->set_unkeyed_rows(v->unkeyed_rows);
    resp->set_keyed(v->keyed);
    resp->set_last_id(v->last_id);
    resp->set_last_hash(v->last_hash);
  }
  reactor->Finish(toGrpcStatus(v.status()));
  return reactor;
}

grpc::ServerWriteReactor<v1::AuditExportChunk>* OperatorService::ExportAudit(
    grpc::CallbackServerContext* ctx, const v1::ExportAuditRequest* req) {
  auto exported = audit_trail_.exportFrom(identify(*ctx), req->since_id());
  std::vector<v1::AuditExportChunk> chunks;
  if (exported.ok()) {
    const std::string& text = exported->text;
    for (size_t at = 0; at < text.size(); at += kStreamChunkBytes) {
      chunks.emplace_back().set_data(text.substr(at, kStreamChunkBytes));
    }
    auto& last = chunks.emplace_back();
    last.set_signature(exported->signature);
    last.set_certificate_pem(exported->certificate_pem);
  }
  return new ChunkWriter<v1::AuditExportChunk>(std::move(chunks), toGrpcStatus(exported.status()));
}

}  // namespace bulkhead::controller
