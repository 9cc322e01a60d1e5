// The Operator service (bulkhead CLI, automation) on the gRPC callback API.
//
// Every call is audited, reads included, with the operator identity from the client
// certificate; the audit row is durable before the call returns, and a call whose audit row
// cannot be written fails (nothing is accepted unaudited). Only OU=operator certificates are
// served; viewers may only read, responders and admins may act.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "bulkhead/v1/operator.grpc.pb.h"
#include "common/identity.h"
#include "controller/core/clock.h"
#include "controller/rpc/evidence.h"
#include "controller/rpc/fleet.h"
#include "controller/service/audit_trail.h"
#include "controller/service/authorization.h"
#include "controller/service/containment.h"
#include "controller/service/enrollment.h"
#include "controller/service/evidence_service.h"
#include "controller/service/host_actions.h"
#include "controller/service/host_inventory.h"
#include "controller/service/host_operations.h"
#include "controller/service/incidents.h"
#include "controller/service/integrations.h"
#include "controller/service/notifications.h"
#include "controller/service/signals.h"
#include "controller/service/tenants.h"
#include "controller/store/store.h"
#include "evidence/signing.h"

namespace bulkhead::controller {

class OperatorService final : public bulkhead::v1::Operator::CallbackService {
 public:
  // The services it translates for (not owned) outlive it. `audit_signer` (not owned) signs
  // audit exports; nullptr: ExportAudit fails UNAVAILABLE.
  OperatorService(const Clock& clock, Store& store, Fleet& fleet, Containment& containment,
                  HostOperations& host_operations, EvidenceService& evidence_service,
                  SignalService& signals, IntegrationService& integrations,
                  EnrollmentService& enrollment, const evidence::Signer* audit_signer = nullptr,
                  NotificationBackend* notifications = nullptr);

  // The generated base keeps the sync-API overloads of every method; keep them visible.
  using Base = bulkhead::v1::Operator::CallbackService;
  using Base::Approve;
  using Base::Block;
  using Base::Capture;
  using Base::CloseIncident;
  using Base::CreateIntegration;
  using Base::CreateJoinToken;
  using Base::CreateTenant;
  using Base::ExportAudit;
  using Base::GetEvidence;
  using Base::GetHost;
  using Base::GrantAccess;
  using Base::Isolate;
  using Base::KillConnections;
  using Base::KillProcess;
  using Base::KillSessions;
  using Base::ListAccess;
  using Base::ListApprovals;
  using Base::ListAudit;
  using Base::ListBlocks;
  using Base::ListEvidence;
  using Base::ListHosts;
  using Base::ListIncidents;
  using Base::ListIntegrations;
  using Base::ListJoinTokens;
  using Base::ListNotifyChannels;
  using Base::ListSessions;
  using Base::ListSignals;
  using Base::ListTenants;
  using Base::NoteIncident;
  using Base::OpenIncident;
  using Base::PreviewSignal;
  using Base::Reject;
  using Base::Release;
  using Base::RenewOperatorCertificate;
  using Base::ReportIncident;
  using Base::RevokeAccess;
  using Base::RevokeIntegration;
  using Base::RevokeJoinToken;
  using Base::SetHostLabels;
  using Base::ShowEvidence;
  using Base::ShowIncident;
  using Base::SubmitSignal;
  using Base::TestNotify;
  using Base::Unblock;
  using Base::VerifyAudit;
  using Base::VerifyEvidence;

  grpc::ServerUnaryReactor* ListHosts(grpc::CallbackServerContext* ctx,
                                      const bulkhead::v1::ListHostsRequest* req,
                                      bulkhead::v1::ListHostsResponse* resp) override;
  grpc::ServerUnaryReactor* GetHost(grpc::CallbackServerContext* ctx,
                                    const bulkhead::v1::GetHostRequest* req,
                                    bulkhead::v1::HostStatus* resp) override;
  grpc::ServerUnaryReactor* Isolate(grpc::CallbackServerContext* ctx,
                                    const bulkhead::v1::IsolateRequest* req,
                                    bulkhead::v1::ContainmentResponse* resp) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx,
                                    const bulkhead::v1::ReleaseRequest* req,
                                    bulkhead::v1::ContainmentResponse* resp) override;
  grpc::ServerUnaryReactor* ListAudit(grpc::CallbackServerContext* ctx,
                                      const bulkhead::v1::ListAuditRequest* req,
                                      bulkhead::v1::ListAuditResponse* resp) override;
  grpc::ServerUnaryReactor* VerifyAudit(grpc::CallbackServerContext* ctx,
                                        const bulkhead::v1::VerifyAuditRequest* req,
                                        bulkhead::v1::VerifyAuditResponse* resp) override;
  grpc::ServerWriteReactor<bulkhead::v1::AuditExportChunk>* ExportAudit(
      grpc::CallbackServerContext* ctx, const bulkhead::v1::ExportAuditRequest* req) override;

  // Sessions and processes (operator_host_actions.cc): one command to the host's agent.
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::ListSessionsRequest* req,
                                         bulkhead::v1::HostActionResponse* resp) override;
  grpc::ServerUnaryReactor* KillSessions(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::KillSessionsRequest* req,
                                         bulkhead::v1::HostActionResponse* resp) override;
  grpc::ServerUnaryReactor* KillProcess(grpc::CallbackServerContext* ctx,
                                        const bulkhead::v1::KillProcessRequest* req,
                                        bulkhead::v1::HostActionResponse* resp) override;

  // Blocks (operator_blocks.cc): handed to Containment, which finishes the call.
  grpc::ServerUnaryReactor* Block(grpc::CallbackServerContext* ctx,
                                  const bulkhead::v1::BlockRequest* req,
                                  bulkhead::v1::ContainmentResponse* resp) override;
  grpc::ServerUnaryReactor* Unblock(grpc::CallbackServerContext* ctx,
                                    const bulkhead::v1::UnblockRequest* req,
                                    bulkhead::v1::ContainmentResponse* resp) override;
  grpc::ServerUnaryReactor* ListBlocks(grpc::CallbackServerContext* ctx,
                                       const bulkhead::v1::ListBlocksRequest* req,
                                       bulkhead::v1::ListBlocksResponse* resp) override;
  // kill-connections: one command to the host's agent (HostOperations).
  grpc::ServerUnaryReactor* KillConnections(grpc::CallbackServerContext* ctx,
                                            const bulkhead::v1::KillConnectionsRequest* req,
                                            bulkhead::v1::HostActionResponse* resp) override;

  // Evidence (operator_evidence.cc): EvidenceService (controller/service/evidence_service.h)
  // decides and records; these stream its answers.
  grpc::ServerWriteReactor<bulkhead::v1::CaptureEvent>* Capture(
      grpc::CallbackServerContext* ctx, const bulkhead::v1::CaptureRequest* req) override;
  grpc::ServerUnaryReactor* ListEvidence(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::ListEvidenceRequest* req,
                                         bulkhead::v1::ListEvidenceResponse* resp) override;
  grpc::ServerWriteReactor<bulkhead::v1::EvidenceDownload>* GetEvidence(
      grpc::CallbackServerContext* ctx, const bulkhead::v1::GetEvidenceRequest* req) override;
  grpc::ServerUnaryReactor* VerifyEvidence(grpc::CallbackServerContext* ctx,
                                           const bulkhead::v1::VerifyEvidenceRequest* req,
                                           bulkhead::v1::VerifyEvidenceResponse* resp) override;
  grpc::ServerUnaryReactor* ShowEvidence(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::ShowEvidenceRequest* req,
                                         bulkhead::v1::ShowEvidenceResponse* resp) override;

  // Signals (operator_signals.cc): SignalService decides and records.
  grpc::ServerUnaryReactor* SubmitSignal(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::SubmitSignalRequest* req,
                                         bulkhead::v1::SubmitSignalResponse* resp) override;
  grpc::ServerUnaryReactor* ListSignals(grpc::CallbackServerContext* ctx,
                                        const bulkhead::v1::ListSignalsRequest* req,
                                        bulkhead::v1::ListSignalsResponse* resp) override;
  grpc::ServerUnaryReactor* PreviewSignal(grpc::CallbackServerContext* ctx,
                                          const bulkhead::v1::PreviewSignalRequest* req,
                                          bulkhead::v1::SubmitSignalResponse* resp) override;
  grpc::ServerUnaryReactor* ListApprovals(grpc::CallbackServerContext* ctx,
                                          const bulkhead::v1::ListApprovalsRequest* req,
                                          bulkhead::v1::ListApprovalsResponse* resp) override;
  grpc::ServerUnaryReactor* Approve(grpc::CallbackServerContext* ctx,
                                    const bulkhead::v1::DecideApprovalRequest* req,
                                    bulkhead::v1::Approval* resp) override;
  grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* ctx,
                                   const bulkhead::v1::DecideApprovalRequest* req,
                                   bulkhead::v1::Approval* resp) override;

  // Webhook integrations (operator_signals.cc): IntegrationService checks, stores and audits.
  grpc::ServerUnaryReactor* CreateIntegration(grpc::CallbackServerContext* ctx,
                                              const bulkhead::v1::CreateIntegrationRequest* req,
                                              bulkhead::v1::CreateIntegrationResponse* resp) override;
  grpc::ServerUnaryReactor* ListIntegrations(grpc::CallbackServerContext* ctx,
                                             const bulkhead::v1::ListIntegrationsRequest* req,
                                             bulkhead::v1::ListIntegrationsResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeIntegration(grpc::CallbackServerContext* ctx,
                                              const bulkhead::v1::RevokeIntegrationRequest* req,
                                              bulkhead::v1::Integration* resp) override;

  // Join tokens (operator_signals.cc): EnrollmentService checks, stores and audits.
  grpc::ServerUnaryReactor* CreateJoinToken(grpc::CallbackServerContext* ctx,
                                            const bulkhead::v1::CreateJoinTokenRequest* req,
                                            bulkhead::v1::CreateJoinTokenResponse* resp) override;
  grpc::ServerUnaryReactor* ListJoinTokens(grpc::CallbackServerContext* ctx,
                                           const bulkhead::v1::ListJoinTokensRequest* req,
                                           bulkhead::v1::ListJoinTokensResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeJoinToken(grpc::CallbackServerContext* ctx,
                                            const bulkhead::v1::RevokeJoinTokenRequest* req,
                                            bulkhead::v1::JoinToken* resp) override;

  // Tenants and role bindings (operator_tenants.cc): TenantService checks, stores and audits.
  grpc::ServerUnaryReactor* ListTenants(grpc::CallbackServerContext* ctx,
                                        const bulkhead::v1::ListTenantsRequest* req,
                                        bulkhead::v1::ListTenantsResponse* resp) override;
  grpc::ServerUnaryReactor* CreateTenant(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::CreateTenantRequest* req,
                                         bulkhead::v1::Tenant* resp) override;
  grpc::ServerUnaryReactor* ListAccess(grpc::CallbackServerContext* ctx,
                                       const bulkhead::v1::ListAccessRequest* req,
                                       bulkhead::v1::ListAccessResponse* resp) override;
  grpc::ServerUnaryReactor* GrantAccess(grpc::CallbackServerContext* ctx,
                                        const bulkhead::v1::GrantAccessRequest* req,
                                        bulkhead::v1::RoleBinding* resp) override;
  grpc::ServerUnaryReactor* RevokeAccess(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::RevokeAccessRequest* req,
                                         bulkhead::v1::RoleBinding* resp) override;
  grpc::ServerUnaryReactor* SetHostLabels(grpc::CallbackServerContext* ctx,
                                          const bulkhead::v1::SetHostLabelsRequest* req,
                                          bulkhead::v1::HostSummary* resp) override;
  grpc::ServerUnaryReactor* RenewOperatorCertificate(
      grpc::CallbackServerContext* ctx, const bulkhead::v1::RenewOperatorCertificateRequest* req,
      bulkhead::v1::RenewOperatorCertificateResponse* resp) override;
  grpc::ServerUnaryReactor* OpenIncident(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::OpenIncidentRequest* req,
                                         bulkhead::v1::Incident* resp) override;
  grpc::ServerUnaryReactor* ListIncidents(grpc::CallbackServerContext* ctx,
                                          const bulkhead::v1::ListIncidentsRequest* req,
                                          bulkhead::v1::ListIncidentsResponse* resp) override;
  grpc::ServerUnaryReactor* ShowIncident(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::ShowIncidentRequest* req,
                                         bulkhead::v1::ShowIncidentResponse* resp) override;
  grpc::ServerUnaryReactor* NoteIncident(grpc::CallbackServerContext* ctx,
                                         const bulkhead::v1::IncidentNoteRequest* req,
                                         bulkhead::v1::Incident* resp) override;
  grpc::ServerUnaryReactor* CloseIncident(grpc::CallbackServerContext* ctx,
                                          const bulkhead::v1::CloseIncidentRequest* req,
                                          bulkhead::v1::Incident* resp) override;
  grpc::ServerWriteReactor<bulkhead::v1::IncidentReportChunk>* ReportIncident(
      grpc::CallbackServerContext* ctx, const bulkhead::v1::IncidentReportRequest* req) override;
  grpc::ServerUnaryReactor* ListNotifyChannels(
      grpc::CallbackServerContext* ctx, const bulkhead::v1::ListNotifyChannelsRequest* req,
      bulkhead::v1::ListNotifyChannelsResponse* resp) override;
  grpc::ServerUnaryReactor* TestNotify(grpc::CallbackServerContext* ctx,
                                       const bulkhead::v1::TestNotifyRequest* req,
                                       bulkhead::v1::TestNotifyResponse* resp) override;

  // The caller of one call, as its certificate says, with its grants, the tenant it chose
  // (request metadata kTenantMetadata; TenantService::scopeCaller) and the incident the call is
  // part of (kIncidentMetadata; IncidentService::scopeCaller). Refuses revoked certificates
  // (the Fleet's PeerGate).
  Caller identify(const grpc::CallbackServerContext& ctx);

 private:
  Fleet& fleet_;
  Containment& containment_;
  HostInventory inventory_;  // hosts and status
  AuditTrail audit_trail_;   // list, verify and export
  HostOperations& host_operations_;  // sessions, processes and connections
  EvidenceService& evidence_service_;  // capture and the calls on stored evidence
  SignalService& signals_;
  IntegrationService& integrations_;
  EnrollmentService& enrollment_;
  TenantService tenants_;  // tenants, bindings, and each caller's scope
  ChromiumPdf pdf_;        // prints incident reports as PDF
  IncidentService incidents_;  // incidents, and each caller's --incident
  NotificationService notifications_;  // notification channels: listing, test
};

// The request metadata naming the call's tenant: a name, or "*" (`bulkhead --tenant`).
inline constexpr char kTenantMetadata[] = "bulkhead-tenant";
// The request metadata naming the incident a call is part of (`bulkhead --incident`).
inline constexpr char kIncidentMetadata[] = "bulkhead-incident";

}  // namespace bulkhead::controller
