// Operator service: incidents (OpenIncident, ListIncidents, ShowIncident, NoteIncident,
// CloseIncident), translated for IncidentService (controller/service/incidents.h), which
// checks, records and audits.
#include "controller/rpc/audit.h"
#include "controller/rpc/operator_service.h"
#include "controller/rpc/translate.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

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

}  // namespace bulkhead::controller
