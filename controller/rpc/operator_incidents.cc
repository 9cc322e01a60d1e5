// Operator service: incidents (OpenIncident, ListIncidents, ShowIncident, NoteIncident,
// CloseIncident, ReportIncident), translated for IncidentService (controller/service/incidents.h),
// which checks, records and audits.
#include "controller/rpc/audit.h"
#include "controller/rpc/chunk_writer.h"
#include "controller/rpc/operator_service.h"
#include "controller/rpc/translate.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

// The service's name of a format; "" for unspecified (the service says it is required).
std::string formatName(v1::IncidentReportFormat format) {
  switch (format) {
    case v1::INCIDENT_REPORT_FORMAT_HTML: return "html";
    case v1::INCIDENT_REPORT_FORMAT_PDF: return "pdf";
    case v1::INCIDENT_REPORT_FORMAT_JSON: return "json";
    case v1::INCIDENT_REPORT_FORMAT_MARKDOWN: return "md";
    default: return "";
  }
}

}  // namespace

grpc::ServerUnaryReactor* OperatorService::OpenIncident(grpc::CallbackServerContext* ctx,
                                                        const v1::OpenIncidentRequest* req,
                                                        v1::Incident* resp) {
  return finishUnary(ctx->DefaultReactor(), incidents_.open(identify(*ctx), *req), resp);
}

grpc::ServerUnaryReactor* OperatorService::ListIncidents(grpc::CallbackServerContext* ctx,
                                                         const v1::ListIncidentsRequest* /*req*/,
                                                         v1::ListIncidentsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto incidents = incidents_.list(identify(*ctx));
  if (incidents.ok()) {
    for (auto& i : *incidents) *resp->add_incidents() = std::move(i);
  }
  reactor->Finish(toGrpcStatus(incidents.status()));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ShowIncident(grpc::CallbackServerContext* ctx,
                                                        const v1::ShowIncidentRequest* req,
                                                        v1::ShowIncidentResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto timeline = incidents_.show(identify(*ctx), req->incident_id());
  if (timeline.ok()) *resp = toProto(*timeline);
  reactor->Finish(toGrpcStatus(timeline.status()));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::NoteIncident(grpc::CallbackServerContext* ctx,
                                                        const v1::IncidentNoteRequest* req,
                                                        v1::Incident* resp) {
  return finishUnary(ctx->DefaultReactor(), incidents_.note(identify(*ctx), *req), resp);
}

grpc::ServerUnaryReactor* OperatorService::CloseIncident(grpc::CallbackServerContext* ctx,
                                                         const v1::CloseIncidentRequest* req,
                                                         v1::Incident* resp) {
  return finishUnary(ctx->DefaultReactor(), incidents_.close(identify(*ctx), *req), resp);
}

grpc::ServerWriteReactor<v1::IncidentReportChunk>* OperatorService::ReportIncident(
    grpc::CallbackServerContext* ctx, const v1::IncidentReportRequest* req) {
  auto report = incidents_.report(identify(*ctx), req->incident_id(), formatName(req->format()));
  std::vector<v1::IncidentReportChunk> chunks;
  if (report.ok()) {
    const std::string& file = report->file;
    for (size_t at = 0; at < file.size(); at += kStreamChunkBytes) {
      chunks.emplace_back().set_data(file.substr(at, kStreamChunkBytes));
    }
    auto& last = chunks.emplace_back();
    last.set_manifest(report->manifest);
    last.set_signature(report->signature);
    last.set_certificate_pem(report->certificate_pem);
  }
  return new ChunkWriter<v1::IncidentReportChunk>(std::move(chunks), toGrpcStatus(report.status()));
}

}  // namespace bulkhead::controller
