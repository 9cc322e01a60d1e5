// Join tokens for enrolling agents (controller/service/enrollment.h; admins only):
//   bulkhead tokens                                        list them
//   bulkhead tokens create --labels K=V,... --ttl DUR --uses N --reason R
//                                                          a new one for the --tenant's
//                                                          hosts; prints it once
//   bulkhead tokens revoke ID --reason R                   refuse it from now on
#include <fmt/format.h>

#include <sstream>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/operator_client.h"
#include "cli/output.h"
#include "common/parse.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

namespace v1 = bulkhead::v1;

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
      {"TOKEN", "TENANT", "LABELS", "USES", "EXPIRES", "BY", "STATE"}};
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
    rows.push_back({t.token_id(), t.tenant().empty() ? "default" : t.tenant(),
                    labelList(t.labels()), fmt::format("{}/{}", t.uses(), t.max_uses()),
                    utcTime(t.expires_unix_ms()), t.created_by(), state});
  }
  printTable(io.out, rows);
  return kOk;
}

int tokensCreate(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string labels, ttl = "1h", reason;
  uint32_t uses = 1;
  po::options_description opts("tokens create --labels K=V,... --ttl DUR --uses N --reason R");
  opts.add_options()("labels", po::value(&labels), "the enrolled hosts' labels (K=V,...)")(
      "ttl", po::value(&ttl), "how long the token can be used (default 1h; 1m to 30d)")(
      "uses", po::value(&uses), "how many hosts may enroll with it (default 1)")(
      "reason", po::value(&reason), "why (ticket or change id); required, audited");
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
  io.out << fmt::format(
      "join token {} (tenant {}; labels {}; {} use{}; expires {}). Shown this once; the "
      "controller keeps only its SHA-256:\n{}\n"
      "on each server: bulkhead-agent enroll --token TOKEN [--host-id ID]\n",
      t.token_id(), t.tenant().empty() ? "default" : t.tenant(), labelList(t.labels()),
      t.max_uses(), t.max_uses() == 1 ? "" : "s", utcTime(t.expires_unix_ms()), resp.token_text());
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

}  // namespace

void addTokenCommands(std::map<std::string, CommandInfo>& table) {
  table["tokens"] = {"join tokens for enrolling agents (admins)", tokensList};
  table["tokens create"] = {"a new join token; prints it once", tokensCreate};
  table["tokens revoke"] = {"revoke a join token", tokensRevoke};
}

}  // namespace bulkhead::cli
