// Join tokens for enrolling agents and operators (controller/service/enrollment.h; admins
// only), and enrolling an operator with one:
//   bulkhead tokens                                        list them
//   bulkhead tokens create --labels K=V,... --ttl DUR --uses N --reason R
//                                                          a new one for the --tenant's
//                                                          hosts; prints it once
//   bulkhead tokens create --operator NAME --role R [--hosts K=V,...] --ttl DUR --reason R
//                                                          one operator's token: its role
//                                                          binding is added when it enrolls
//   bulkhead enroll --token TOKEN --identity DIR           make this operator's key here,
//                                                          get its certificate
//   bulkhead tokens revoke ID --reason R                   refuse it from now on
#include <fmt/format.h>

#include <cctype>
#include <filesystem>
#include <sstream>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/operator_client.h"
#include "cli/output.h"
#include "common/certificate.h"
#include "common/identity.h"
#include "common/join_token.h"
#include "common/parse.h"
#include "common/pki/pki.h"
#include "common/tls/enrollment_client.h"
#include "common/tls/tls.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

namespace v1 = bulkhead::v1;

// "viewer", "responder", ... as the role reads in `access`.
std::string roleText(v1::OperatorRole role) {
  constexpr std::string_view kPrefix = "OPERATOR_ROLE_";
  if (!v1::OperatorRole_IsValid(role)) return "unknown";
  std::string text(std::string_view(v1::OperatorRole_Name(role)).substr(kPrefix.size()));
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string labelList(const google::protobuf::Map<std::string, std::string>& labels) {
  const std::string out = labelsText(Labels(labels.begin(), labels.end()));
  return out.empty() ? "-" : out;
}

int tokensList(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  po::options_description opts("tokens");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("tokens", args, opts, pos, vm, io, &help)) return help ? kOk : kUsage;
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead tokens: " << client.status().message() << "\n";
    return kUsage;
  }
  v1::ListJoinTokensResponse resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().ListJoinTokens(ctx.get(), v1::ListJoinTokensRequest(), &resp);
  if (!st.ok()) return reportRpcError("tokens", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  std::vector<std::vector<std::string>> rows = {
      {"TOKEN", "TENANT", "LABELS OR OPERATOR", "USES", "EXPIRES", "BY", "STATE"}};
  for (const v1::JoinToken& t : resp.tokens()) {
    std::string state = "active";
    if (t.revoked_unix_ms() != 0) {
      state = fmt::format("revoked {} by {}: {}", utcTime(t.revoked_unix_ms()), t.revoked_by(),
                          t.revoke_reason());
    } else if (t.uses() >= t.max_uses()) {
      state = "used up";
    } else if (now_ms >= t.expires_unix_ms()) {
      state = "expired";
    }
    const std::string what =
        t.operator_name().empty()
            ? labelList(t.labels())
            : fmt::format("operator {} ({})", t.operator_name(), roleText(t.operator_role()));
    rows.push_back({t.token_id(), tenantOrDefault(t.tenant()), what,
                    fmt::format("{}/{}", t.uses(), t.max_uses()), utcTime(t.expires_unix_ms()),
                    t.created_by(), state});
  }
  printTable(io.out, rows);
  return kOk;
}

int tokensCreate(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string labels, ttl = "1h", reason, operator_name, role_text, hosts;
  uint32_t uses = 1;
  po::options_description opts(
      "tokens create --labels K=V,... --ttl DUR --uses N --reason R\n"
      "tokens create --operator NAME --role R [--hosts K=V,...] --ttl DUR --reason R");
  opts.add_options()("labels", po::value(&labels), "the enrolled hosts' labels (K=V,...)")(
      "ttl", po::value(&ttl), "how long the token can be used (default 1h; 1m to 30d)")(
      "uses", po::value(&uses), "how many hosts may enroll with it (default 1)")(
      "reason", po::value(&reason), "why (ticket or change id); required, audited")(
      "operator", po::value(&operator_name),
      "an operator token for this name (NAME@TENANT outside tenant default)")(
      "role", po::value(&role_text), "the operator's role: viewer, responder, approver, admin")(
      "hosts", po::value(&hosts), "the operator's hosts (K=V,...; default: every host)");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("tokens create", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto bad = [&](const std::string& message) {
    io.err << "bulkhead tokens create: " << message << "\n";
    return kUsage;
  };
  if (reason.empty()) return bad("--reason: required (a ticket or change id)");
  v1::CreateJoinTokenRequest req;
  if (!labels.empty()) {
    auto parsed = parseSelector("--labels", labels);
    if (!parsed.ok()) return bad(std::string(parsed.status().message()));
    for (const auto& [k, v] : *parsed) (*req.mutable_labels())[k] = v;
  }
  auto duration = parseDuration("--ttl", ttl);
  if (!duration.ok()) return bad(std::string(duration.status().message()));
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(*duration).count();
  if (seconds < 60 || seconds > int64_t{30} * 24 * 3600) {
    return bad(fmt::format("--ttl: invalid value \"{}\": from 1m to 30d", ttl));
  }
  if (uses == 0) return bad("--uses: invalid value \"0\": at least 1");
  if (!operator_name.empty()) {
    if (!labels.empty()) return bad("--labels: an operator token carries none (see --hosts)");
    if (uses != 1) return bad("--uses: an operator token enrolls one operator");
    auto role = parseGrantableRole("--role", role_text);
    if (!role.ok()) return bad(std::string(role.status().message()));
    if (!hosts.empty()) {
      if (auto parsed = parseSelector("--hosts", hosts); !parsed.ok()) {
        return bad(std::string(parsed.status().message()));
      }
    }
    req.set_operator_name(operator_name);
    req.set_operator_role(*role);
    req.set_operator_hosts(hosts);
  } else if (!role_text.empty() || !hosts.empty()) {
    return bad("--role and --hosts are for an operator token: name it with --operator NAME");
  }
  req.set_ttl_seconds(static_cast<uint32_t>(seconds));
  req.set_max_uses(uses);
  req.set_reason(reason);
  auto client = OperatorClient::create(g);
  if (!client.ok()) return bad(std::string(client.status().message()));
  v1::CreateJoinTokenResponse resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().CreateJoinToken(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("tokens create", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  const v1::JoinToken& t = resp.token();
  if (!t.operator_name().empty()) {
    io.out << fmt::format(
        "operator token {} for {} ({} on {} in tenant {}; expires {}). Shown this once; the "
        "controller keeps only its SHA-256:\n{}\n"
        "on the operator's machine: bulkhead enroll --token TOKEN --identity DIR\n",
        t.token_id(), t.operator_name(), roleText(t.operator_role()),
        t.operator_hosts().empty() ? "every host" : "hosts " + t.operator_hosts(),
        tenantOrDefault(t.tenant()), utcTime(t.expires_unix_ms()), resp.token_text());
    return kOk;
  }
  io.out << fmt::format(
      "join token {} (tenant {}; labels {}; {} use{}; expires {}). Shown this once; the "
      "controller keeps only its SHA-256:\n{}\n"
      "on each server: bulkhead-agent enroll --token TOKEN [--host-id ID]\n",
      t.token_id(), tenantOrDefault(t.tenant()), labelList(t.labels()), t.max_uses(),
      t.max_uses() == 1 ? "" : "s", utcTime(t.expires_unix_ms()), resp.token_text());
  return kOk;
}

int tokensRevoke(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id, reason;
  po::options_description opts("tokens revoke ID --reason R");
  opts.add_options()("id", po::value(&id)->required(), "the token's id (jt-...)")(
      "reason", po::value(&reason), "why (incident or ticket); required, audited");
  po::positional_options_description pos;
  pos.add("id", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("tokens revoke", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (reason.empty()) {
    io.err << "bulkhead tokens revoke: --reason: required (an incident or ticket id)\n";
    return kUsage;
  }
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead tokens revoke: " << client.status().message() << "\n";
    return kUsage;
  }
  v1::RevokeJoinTokenRequest req;
  req.set_token_id(id);
  req.set_reason(reason);
  v1::JoinToken resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().RevokeJoinToken(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("tokens revoke", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  io.out << fmt::format("join token {} revoked ({} of {} uses made): refused from now on\n",
                        resp.token_id(), resp.uses(), resp.max_uses());
  return kOk;
}

int enroll(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string token_text, token_file, timeout = "30s";
  po::options_description opts("enroll --token TOKEN [--token-file F] [--timeout DUR]");
  opts.add_options()("token", po::value(&token_text),
                     "the operator token `bulkhead tokens create --operator` printed")(
      "token-file", po::value(&token_file),
      "read the token from this file instead (keeps it out of the process list)")(
      "timeout", po::value(&timeout), "how long to wait for the controller (default 30s)");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("enroll", args, opts, pos, vm, io, &help)) return help ? kOk : kUsage;
  auto bad = [&](const std::string& message) {
    io.err << "bulkhead enroll: " << message << "\n";
    return kUsage;
  };
  if (token_text.empty() == token_file.empty()) {
    return bad("name the token with exactly one of --token and --token-file");
  }
  if (!token_file.empty()) {
    auto text = readFile(token_file);
    if (!text.ok())
      return bad(fmt::format("--token-file: {}", std::string(text.status().message())));
    token_text = *text;
  }
  auto token = parseJoinToken(token_text);
  if (!token.ok()) return bad(std::string(token.status().message()));
  if (g.identity.empty()) {
    return bad(
        "--identity: required (the directory to write the new identity into, or set "
        "BULKHEAD_IDENTITY)");
  }
  auto wait = parseDuration("--timeout", timeout);
  if (!wait.ok()) return bad(std::string(wait.status().message()));
  const std::filesystem::path dir(g.identity);
  std::error_code ec;
  if (std::filesystem::exists(dir / "tls.key", ec) ||
      std::filesystem::exists(dir / "tls.crt", ec)) {
    io.err << fmt::format(
        "bulkhead enroll: {} already holds an identity (tls.crt, tls.key): nothing written; "
        "choose another --identity, or remove the old one first\n",
        dir.string());
    return kFailed;
  }
  // The key is made here and never leaves this machine; the request's name is a placeholder
  // (the token names the operator, the controller writes the subject).
  auto request = createKeyAndCsr("operator");
  if (!request.ok()) {
    io.err << "bulkhead enroll: " << request.status().message() << "\n";
    return kFailed;
  }
  auto answer = enrollWithToken(*token, "", request->csr_pem, *wait);
  if (!answer.ok()) {
    io.err << "bulkhead enroll: refused, nothing written: " << answer.status().message() << "\n";
    return kFailed;
  }
  auto issued = identityFromCertPem(answer->cert_pem());
  absl::Status check = issued.status();
  if (check.ok() && (issued->kind != PeerKind::kOperator || answer->operator_name().empty() ||
                     issued->name != answer->operator_name())) {
    check = absl::InvalidArgumentError(
        "it is not an operator certificate (is this an agents' token? servers enroll with "
        "`bulkhead-agent enroll`)");
  }
  if (check.ok()) {
    check = checkIdentityFiles(answer->ca_pem(), answer->cert_pem(), request->key_pem);
  }
  if (!check.ok()) {
    io.err << "bulkhead enroll: the controller's certificate does not check out, nothing "
              "written: "
           << check.message() << "\n";
    return kFailed;
  }
  absl::Status written =
      writeIdentity(dir, answer->ca_pem(), answer->cert_pem(), request->key_pem, false);
  if (written.ok()) {
    written = writeFileAtomic(dir / kControllerNameFile, answer->controller_name() + "\n", 0644);
  }
  if (written.ok() && !answer->controller_addresses().empty()) {
    written =
        writeFileAtomic(dir / kControllerAddressFile, answer->controller_addresses(0) + "\n", 0644);
  }
  if (!written.ok()) {
    io.err << "bulkhead enroll: " << written.message() << "\n";
    return kFailed;
  }
  if (g.json) {
    printJson(io.out, answer->binding());
    return kOk;
  }
  const v1::RoleBinding& b = answer->binding();
  io.out << fmt::format(
      "enrolled as operator {} (serial {}): {} in tenant {} on {} ({}); identity written to {}\n"
      "use it: export BULKHEAD_IDENTITY={}   (the controller's address is in {}/{})\n",
      issued->name, issued->serial, b.role_name(), b.tenant(),
      b.hosts().empty() ? "every host" : "hosts " + b.hosts(), b.binding_id(), dir.string(),
      dir.string(), dir.string(), kControllerAddressFile);
  return kOk;
}

int renew(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  po::options_description opts("renew");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("renew", args, opts, pos, vm, io, &help)) return help ? kOk : kUsage;
  auto client = connectClient("renew", g, io.err, /*renew_when_due=*/false);
  if (client == nullptr) return kUsage;
  const IdentityFiles& before = client->identity();
  auto renewed = renewCertificate(client->stub(), client->identityDir(), before, g.timeout);
  if (!renewed.ok()) {
    return reportRpcError("renew", client->controller(),
                          grpc::Status(static_cast<grpc::StatusCode>(renewed.status().code()),
                                       std::string(renewed.status().message())),
                          io.err);
  }
  if (g.json) {
    v1::RenewOperatorCertificateResponse doc;
    doc.set_cert_pem(renewed->cert_pem);
    doc.set_ca_pem(renewed->ca_pem);
    printJson(io.out, doc);
    return kOk;
  }
  io.out << fmt::format("certificate of {} renewed: serial {} -> {}, valid until {}\n",
                        renewed->self.name, before.self.serial, renewed->self.serial,
                        utcTime(renewed->self.not_after_unix * 1000));
  return kOk;
}

}  // namespace

void addTokenCommands(std::map<std::string, CommandInfo>& table) {
  table["tokens"] = {"join tokens for enrolling agents and operators (admins)", tokensList};
  table["tokens create"] = {"a new join token; prints it once", tokensCreate};
  table["tokens revoke"] = {"revoke a join token", tokensRevoke};
  table["enroll"] = {"enroll this operator with an operator token (the key is made here)", enroll};
  table["renew"] = {"renew this operator's certificate now (the CLI also does when it is due)",
                    renew};
}

}  // namespace bulkhead::cli
