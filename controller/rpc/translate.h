// The operator service's translations between the wire (bulkhead.v1 messages, a unary
// reactor) and the service layer's plain requests and results (controller/service/). Nothing
// here decides anything.
#pragma once

#include <grpcpp/grpcpp.h>

#include <nlohmann/json.hpp>

#include "bulkhead/v1/operator.pb.h"
#include "controller/service/audit_trail.h"
#include "controller/service/containment.h"
#include "controller/service/evidence_service.h"
#include "controller/service/host_inventory.h"
#include "controller/service/host_operations.h"
#include "controller/service/incidents.h"
#include "controller/service/notifications.h"

namespace bulkhead::controller {

ListHostsRequest fromProto(const bulkhead::v1::ListHostsRequest& req);
GetHostRequest fromProto(const bulkhead::v1::GetHostRequest& req);
SetHostLabelsRequest fromProto(const bulkhead::v1::SetHostLabelsRequest& req);
ListAuditRequest fromProto(const bulkhead::v1::ListAuditRequest& req);
IsolateRequest fromProto(const bulkhead::v1::IsolateRequest& req);
CaptureRequest fromProto(const bulkhead::v1::CaptureRequest& req);
ListEvidenceRequest fromProto(const bulkhead::v1::ListEvidenceRequest& req);
ReleaseRequest fromProto(const bulkhead::v1::ReleaseRequest& req);
BlockRequest fromProto(const bulkhead::v1::BlockRequest& req);
UnblockRequest fromProto(const bulkhead::v1::UnblockRequest& req);
ListBlocksRequest fromProto(const bulkhead::v1::ListBlocksRequest& req);
ListSessionsRequest fromProto(const bulkhead::v1::ListSessionsRequest& req);
KillSessionsRequest fromProto(const bulkhead::v1::KillSessionsRequest& req);
KillProcessRequest fromProto(const bulkhead::v1::KillProcessRequest& req);
KillConnectionsRequest fromProto(const bulkhead::v1::KillConnectionsRequest& req);

bulkhead::v1::AuditRecord toProto(const AuditEntry& row);
// A stored bundle's record without (`row`) or with its custody events (EvidenceHub::toProto).
bulkhead::v1::EvidenceRecord toProto(const EvidenceRow& row);
bulkhead::v1::EvidenceRecord toProto(const StoredEvidence& evidence);
bulkhead::v1::VerifyEvidenceResponse toProto(const EvidenceVerification& verification);
// An incident's timeline, with its 72-hour mark.
bulkhead::v1::ShowIncidentResponse toProto(const IncidentTimeline& timeline);
bulkhead::v1::NotifyChannel toProto(const ChannelSummary& channel);
// The record, and `shown.summary` as the typed summary (toEvidenceSummary).
bulkhead::v1::ShowEvidenceResponse toProto(const ShownEvidence& shown);
// evidence::summarize()'s document as the typed message: a null or absent field stays unset,
// and a finding's comm_listed / exe_listed say whether its document names comm / exe at all.
// The document's strings are valid UTF-8 (evidence::boundedText), as proto strings must be.
bulkhead::v1::EvidenceSummary toEvidenceSummary(const nlohmann::json& summary);

// Callbacks that fill `resp` with the result and finish `reactor` with the status. `resp` and
// `reactor` belong to gRPC and stay valid until the Finish.
ContainmentDone finishWith(bulkhead::v1::ContainmentResponse* resp,
                           grpc::ServerUnaryReactor* reactor);
BlocksDone finishWith(bulkhead::v1::ListBlocksResponse* resp, grpc::ServerUnaryReactor* reactor);
HostActionDone finishWith(bulkhead::v1::HostActionResponse* resp,
                          grpc::ServerUnaryReactor* reactor);

}  // namespace bulkhead::controller
