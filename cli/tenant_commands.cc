// Tenants and who may do what in them (controller/service/tenants.h):
//   bulkhead tenants                                       the tenants you hold a role in
//   bulkhead tenants create NAME --reason R                a new tenant (install admins)
//   bulkhead access [--operator NAME]                      role bindings in the tenant
//   bulkhead access grant OPERATOR --role R [--hosts K=V,...] --reason R
//                                                          a role in the tenant (its admins)
//   bulkhead access revoke ID --reason R                   take a binding away
// The tenant is the global --tenant (or BULKHEAD_TENANT).
#include <fmt/format.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/operator_client.h"
#include "cli/output.h"
#include "common/identity.h"
#include "common/parse.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

namespace v1 = bulkhead::v1;

std::string hostsText(const std::string& hosts) {
  return hosts.empty() ? "every host" : fmt::format("hosts {}", hosts);
}

int tenantsList(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  po::options_description opts("tenants");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("tenants", args, opts, pos, vm, io, &help)) return help ? kOk : kUsage;
  return callAndPrint<v1::ListTenantsResponse>(
      "tenants", g, io,
      [](auto& stub, grpc::ClientContext* ctx, v1::ListTenantsResponse* resp) {
        return stub.ListTenants(ctx, v1::ListTenantsRequest(), resp);
      },
      [&](const v1::ListTenantsResponse& resp) {
        std::vector<std::vector<std::string>> rows = {{"TENANT", "CREATED", "BY"}};
        for (const v1::Tenant& t : resp.tenants()) {
          rows.push_back({t.name(),
                          t.created_unix_ms() == 0 ? "(install)" : utcTime(t.created_unix_ms()),
                          t.created_by().empty() ? "-" : t.created_by()});
        }
        printTable(io.out, rows);
      });
}

int tenantsCreate(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string name, reason;
  po::options_description opts("tenants create NAME --reason R");
  opts.add_options()("name", po::value(&name)->required(), "the tenant's name (positional)")(
      "reason", po::value(&reason), "why (contract or ticket id); required, audited");
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("tenants create", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (reason.empty()) {
    io.err << "bulkhead tenants create: --reason: required (a contract or ticket id)\n";
    return kUsage;
  }
  v1::CreateTenantRequest req;
  req.set_name(name);
  req.set_reason(reason);
  return callAndPrint<v1::Tenant>(
      "tenants create", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::Tenant* resp) {
        return stub.CreateTenant(ctx, req, resp);
      },
      [&](const v1::Tenant& t) {
        io.out << fmt::format(
            "tenant {} created. Next: bulkhead tokens create --tenant {} ... to enroll its "
            "servers, and bulkhead access grant OPERATOR --tenant {} --role ROLE ... for its "
            "people\n",
            t.name(), t.name(), t.name());
      });
}

int accessList(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string operator_name;
  po::options_description opts("access [--operator NAME]");
  opts.add_options()("operator", po::value(&operator_name), "only this operator's bindings");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("access", args, opts, pos, vm, io, &help)) return help ? kOk : kUsage;
  v1::ListAccessRequest req;
  req.set_operator_name(operator_name);
  return callAndPrint<v1::ListAccessResponse>(
      "access", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::ListAccessResponse* resp) {
        return stub.ListAccess(ctx, req, resp);
      },
      [&](const v1::ListAccessResponse& resp) {
        std::vector<std::vector<std::string>> rows = {
            {"BINDING", "OPERATOR", "TENANT", "ROLE", "ON", "BY", "CREATED"}};
        for (const v1::RoleBinding& b : resp.bindings()) {
          rows.push_back({b.binding_id(), b.operator_name(), b.tenant(), b.role_name(),
                          hostsText(b.hosts()), b.created_by(), utcTime(b.created_unix_ms())});
        }
        printTable(io.out, rows);
        io.out << "(a certificate's own role counts in tenant default on every host and is not "
                  "listed)\n";
      });
}

int accessGrant(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string operator_name, role_text, hosts, reason;
  po::options_description opts("access grant OPERATOR --role R [--hosts K=V,...] --reason R");
  opts.add_options()("operator", po::value(&operator_name)->required(),
                     "the operator's name, as in its certificate (positional)")(
      "role", po::value(&role_text), "viewer, responder, approver or admin; required")(
      "hosts", po::value(&hosts),
      "only the tenant's hosts with these labels (K=V,...; default every host)")(
      "reason", po::value(&reason), "why (contract or ticket id); required, audited");
  po::positional_options_description pos;
  pos.add("operator", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("access grant", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto bad = [&](const std::string& message) {
    io.err << "bulkhead access grant: " << message << "\n";
    return kUsage;
  };
  auto role = parseGrantableRole("--role", role_text);
  if (!role.ok()) return bad(std::string(role.status().message()));
  if (!hosts.empty()) {
    if (auto parsed = parseSelector("--hosts", hosts); !parsed.ok()) {
      return bad(std::string(parsed.status().message()));
    }
  }
  if (reason.empty()) return bad("--reason: required (a contract or ticket id)");
  v1::GrantAccessRequest req;
  req.set_operator_name(operator_name);
  req.set_role(*role);
  req.set_hosts(hosts);
  req.set_reason(reason);
  return callAndPrint<v1::RoleBinding>(
      "access grant", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::RoleBinding* resp) {
        return stub.GrantAccess(ctx, req, resp);
      },
      [&](const v1::RoleBinding& b) {
        io.out << fmt::format("{}: {} is {} in tenant {} on {}\n", b.binding_id(),
                              b.operator_name(), b.role_name(), b.tenant(), hostsText(b.hosts()));
      });
}

int accessRevoke(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id, reason;
  po::options_description opts("access revoke ID --reason R");
  opts.add_options()("id", po::value(&id)->required(), "the binding's id (rb-...)")(
      "reason", po::value(&reason), "why (ticket id); required, audited");
  po::positional_options_description pos;
  pos.add("id", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("access revoke", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (reason.empty()) {
    io.err << "bulkhead access revoke: --reason: required (a ticket id)\n";
    return kUsage;
  }
  v1::RevokeAccessRequest req;
  req.set_binding_id(id);
  req.set_reason(reason);
  return callAndPrint<v1::RoleBinding>(
      "access revoke", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::RoleBinding* resp) {
        return stub.RevokeAccess(ctx, req, resp);
      },
      [&](const v1::RoleBinding& b) {
        io.out << fmt::format("{} revoked: {} is no longer {} in tenant {} on {}\n", b.binding_id(),
                              b.operator_name(), b.role_name(), b.tenant(), hostsText(b.hosts()));
      });
}

}  // namespace

void addTenantCommands(std::map<std::string, CommandInfo>& table) {
  table["tenants"] = {"the tenants you hold a role in", tenantsList};
  table["tenants create"] = {"a new tenant (install admins)", tenantsCreate};
  table["access"] = {"who holds which role in the tenant", accessList};
  table["access grant"] = {"give an operator a role in the tenant (its admins)", accessGrant};
  table["access revoke"] = {"take a role binding away", accessRevoke};
}

}  // namespace bulkhead::cli
