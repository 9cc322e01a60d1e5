// Webhook integrations (the controller's HTTPS listener, controller/webhook/):
//   bulkhead integrations                                          list them
//   bulkhead integrations create NAME --format F [--mapping FILE]  a new one; prints its token
//   bulkhead integrations revoke NAME --reason R                   refuse its token from now on
#include <fmt/format.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/operator_client.h"
#include "cli/output.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

namespace v1 = bulkhead::v1;

int integrationsList(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  po::options_description opts("integrations");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("integrations", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead integrations: " << client.status().message() << "\n";
    return kUsage;
  }
  v1::ListIntegrationsResponse resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st =
      (*client)->stub().ListIntegrations(ctx.get(), v1::ListIntegrationsRequest(), &resp);
  if (!st.ok()) return reportRpcError("integrations", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {{"NAME", "FORMAT", "CREATED", "BY", "STATE"}};
  std::vector<std::string> tenants;
  for (const v1::Integration& i : resp.integrations()) {
    tenants.push_back(i.tenant());
    std::string state = i.revoked_unix_ms() == 0
                            ? "active"
                            : fmt::format("revoked {} by {}: {}", utcTime(i.revoked_unix_ms()),
                                          i.revoked_by(), i.revoke_reason());
    rows.push_back({i.name(), i.format(), utcTime(i.created_unix_ms()), i.created_by(), state});
  }
  addTenantColumn(rows, 1, tenants);
  printTable(io.out, rows);
  return kOk;
}

int integrationsCreate(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string name, format, mapping;
  po::options_description opts(
      "integrations create NAME --format alertmanager|falco|generic [--mapping FILE]");
  opts.add_options()("name", po::value(&name)->required(), "the integration's name")(
      "format", po::value(&format)->required(), "alertmanager, falco or generic")(
      "mapping", po::value(&mapping),
      "JSON file: the generic format's field mapping (required for generic), or the other "
      "formats' options");
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("integrations create", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto bad = [&](const std::string& message) {
    io.err << "bulkhead integrations create: " << message << "\n";
    return kUsage;
  };
  v1::CreateIntegrationRequest req;
  req.set_name(name);
  // Typed for this controller, as text for an older one (which reads only the text). A name
  // that is no format goes as text only: the controller's refusal names the formats.
  req.set_format(format);
  std::string value_name = "INTEGRATION_FORMAT_";
  for (char c : format)
    value_name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (v1::IntegrationFormat typed; v1::IntegrationFormat_Parse(value_name, &typed)) {
    req.set_format_type(typed);
  }
  if (!mapping.empty()) {
    std::ifstream in(mapping);
    if (!in) return bad(fmt::format("--mapping: cannot read {}", mapping));
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      return bad(fmt::format("--mapping: {} is not a JSON object", mapping));
    }
    req.set_config_json(doc.dump());
  }
  auto client = OperatorClient::create(g);
  if (!client.ok()) return bad(std::string(client.status().message()));
  v1::CreateIntegrationResponse resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().CreateIntegration(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("integrations create", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  io.out << fmt::format(
      "integration {} ({}) created.\n"
      "token (shown this once; the controller keeps only its SHA-256):\n{}\n"
      "senders: POST https://WEBHOOK-LISTEN/v1/signals/{} with Authorization: Bearer TOKEN\n",
      resp.integration().name(), resp.integration().format(), resp.token(),
      resp.integration().name());
  return kOk;
}

int integrationsRevoke(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string name, reason;
  po::options_description opts("integrations revoke NAME --reason R");
  opts.add_options()("name", po::value(&name)->required(), "the integration's name")(
      "reason", po::value(&reason), "why (incident or ticket); required, audited");
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("integrations revoke", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (reason.empty()) {
    io.err << "bulkhead integrations revoke: --reason: required (an incident or ticket id)\n";
    return kUsage;
  }
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead integrations revoke: " << client.status().message() << "\n";
    return kUsage;
  }
  v1::RevokeIntegrationRequest req;
  req.set_name(name);
  req.set_reason(reason);
  v1::Integration resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().RevokeIntegration(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("integrations revoke", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  io.out << fmt::format("integration {} revoked: its token is refused from now on\n", resp.name());
  return kOk;
}

}  // namespace

void addIntegrationCommands(std::map<std::string, CommandInfo>& table) {
  table["integrations"] = {"webhook integrations (HTTPS senders of signals)", integrationsList};
  table["integrations create"] = {"a new webhook integration; prints its bearer token once",
                                  integrationsCreate};
  table["integrations revoke"] = {"revoke a webhook integration's token", integrationsRevoke};
}

}  // namespace bulkhead::cli
