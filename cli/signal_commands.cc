// Signals and playbooks:
//   bulkhead signal --source S --rule R [--ip A]... [--host H] ...   report a detection
//   bulkhead signals [--since D] [--limit N]                          what recent signals caused
//   bulkhead playbook check DIR                                        validate playbook files
//   bulkhead playbook test FILE.json [--reporting-host H]              what a signal would do
//   bulkhead approvals [--all] [--limit N]                             actions awaiting approval
//   bulkhead approve ID --reason TEXT / bulkhead reject ID --reason TEXT
#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/operator_client.h"
#include "cli/output.h"
#include "common/format.h"
#include "common/identity.h"
#include "common/parse.h"
#include "controller/playbook/engine.h"
#include "controller/playbook/playbook.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

namespace v1 = bulkhead::v1;
using controller::parseSeverity;
using controller::parseSignalSource;

void printActions(std::ostream& out,
                  const google::protobuf::RepeatedPtrField<v1::SignalAction>& actions) {
  if (actions.empty()) return;
  std::vector<std::vector<std::string>> rows = {
      {"PLAYBOOK", "ACTION", "TARGET", "DETAIL", "OUTCOME"}};
  for (const v1::SignalAction& a : actions) {
    rows.push_back({a.playbook(), a.action(), a.target(), a.detail(), a.outcome()});
  }
  printTable(out, rows);
}

// A signal from the friendly JSON of `playbook test` (the flags of `bulkhead signal`):
// {"source":"fail2ban","rule":"sshd","addresses":["203.0.113.7"],"host":"h1",
//  "severity":"high","ttl_seconds":600,"resolved":false,"integration":"","labels":{}}
absl::StatusOr<v1::Signal> signalFromJson(const nlohmann::json& doc) {
  if (!doc.is_object()) return absl::InvalidArgumentError("signal: expected a JSON object");
  v1::Signal s;
  auto text = [&](const char* field, std::string& into) -> absl::Status {
    if (!doc.contains(field)) return absl::OkStatus();
    if (!doc[field].is_string()) {
      return absl::InvalidArgumentError(fmt::format("{}: expected a string", field));
    }
    into = doc[field].get<std::string>();
    return absl::OkStatus();
  };
  for (const auto& [key, value] : doc.items()) {
    static const std::set<std::string> known = {
        "source",      "rule",     "addresses",   "host",   "severity",
        "ttl_seconds", "resolved", "integration", "labels", "idempotency_key"};
    if (!known.count(key)) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: unknown field (expected source, rule, addresses, host, severity, ttl_seconds, "
          "resolved, integration, labels, idempotency_key)",
          key));
    }
  }
  std::string source, severity, rule, host, integration, key;
  for (auto [field, into] : {std::pair{"source", &source},
                             {"severity", &severity},
                             {"rule", &rule},
                             {"host", &host},
                             {"integration", &integration},
                             {"idempotency_key", &key}}) {
    if (auto st = text(field, *into); !st.ok()) return st;
  }
  auto parsed_source = parseSignalSource("source", source);
  if (!parsed_source.ok()) return parsed_source.status();
  s.set_source(*parsed_source);
  if (!severity.empty()) {
    auto parsed = parseSeverity("severity", severity);
    if (!parsed.ok()) return parsed.status();
    s.set_severity(*parsed);
  }
  s.set_rule(rule);
  s.set_host(host);
  s.set_integration(integration);
  s.set_idempotency_key(key);
  if (doc.contains("addresses")) {
    if (!doc["addresses"].is_array()) {
      return absl::InvalidArgumentError("addresses: expected a list of strings");
    }
    for (const auto& a : doc["addresses"]) {
      if (!a.is_string())
        return absl::InvalidArgumentError("addresses: expected a list of strings");
      auto cidr = parseCidr("addresses", a.get<std::string>());
      if (!cidr.ok()) return cidr.status();
      s.add_addresses(a.get<std::string>());
    }
  }
  if (doc.contains("ttl_seconds")) {
    if (!doc["ttl_seconds"].is_number_unsigned() ||
        doc["ttl_seconds"].get<uint64_t>() > UINT32_MAX) {
      return absl::InvalidArgumentError("ttl_seconds: expected a whole number of seconds");
    }
    s.set_ttl_seconds(doc["ttl_seconds"].get<uint32_t>());
  }
  if (doc.contains("resolved")) {
    if (!doc["resolved"].is_boolean())
      return absl::InvalidArgumentError("resolved: expected true or false");
    s.set_resolved(doc["resolved"].get<bool>());
  }
  if (doc.contains("labels")) {
    if (!doc["labels"].is_object()) return absl::InvalidArgumentError("labels: expected an object");
    for (const auto& [k, v] : doc["labels"].items()) {
      if (!v.is_string())
        return absl::InvalidArgumentError(fmt::format("labels: {}: expected a string", k));
      (*s.mutable_labels())[k] = v.get<std::string>();
    }
  }
  return s;
}

// " in tenant acme" outside tenant default; "" in it (a single team never sees tenants).
std::string inTenant(const std::string& tenant) {
  return tenant.empty() || tenant == kDefaultTenant ? "" : " in tenant " + tenant;
}

int signalCommand(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string source, rule, host, severity, ttl, key, integration;
  std::vector<std::string> ips, labels;
  bool resolved = false;
  po::options_description opts(
      "signal --source SOURCE --rule RULE [--ip ADDR]... [--host HOST] [options]");
  opts.add_options()("source", po::value(&source)->required(),
                     "fail2ban, crowdsec, alertmanager, falco, wazuh, sshguard, webhook or cli")(
      "rule", po::value(&rule)->required(), "the tool's rule, jail, scenario or alert name")(
      "ip", po::value(&ips), "an offending address or CIDR (repeatable)")(
      "host", po::value(&host), "the affected host (id or name)")(
      "severity", po::value(&severity), "info, low, medium (default), high or critical")(
      "ttl", po::value(&ttl), "how long the verdict should last (e.g. 10m)")(
      "resolved", po::bool_switch(&resolved), "the detection ended (unban, resolved alert)")(
      "key", po::value(&key), "idempotency key: the same key twice acts once")(
      "integration", po::value(&integration), "the webhook integration (source webhook)")(
      "label", po::value(&labels), "k=v (repeatable)");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("signal", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto bad = [&](const absl::Status& s) {
    io.err << "bulkhead signal: " << s.message() << "\n";
    return kUsage;
  };
  v1::SubmitSignalRequest req;
  v1::Signal& s = *req.mutable_signal();
  auto parsed_source = parseSignalSource("--source", source);
  if (!parsed_source.ok()) return bad(parsed_source.status());
  s.set_source(*parsed_source);
  s.set_rule(rule);
  for (const std::string& ip : ips) {
    if (auto c = parseCidr("--ip", ip); !c.ok()) return bad(c.status());
    s.add_addresses(ip);
  }
  s.set_host(host);
  if (!severity.empty()) {
    auto parsed = parseSeverity("--severity", severity);
    if (!parsed.ok()) return bad(parsed.status());
    s.set_severity(*parsed);
  }
  if (!ttl.empty()) {
    auto d = parseDuration("--ttl", ttl);
    if (!d.ok()) return bad(d.status());
    s.set_ttl_seconds(static_cast<uint32_t>(std::min<int64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(*d).count(), UINT32_MAX)));
  }
  s.set_resolved(resolved);
  s.set_idempotency_key(key);
  s.set_integration(integration);
  for (const std::string& l : labels) {
    auto kv = parseLabel("--label", l);
    if (!kv.ok()) return bad(kv.status());
    (*s.mutable_labels())[kv->first] = kv->second;
  }
  if (s.addresses().empty() && s.host().empty()) {
    return bad(
        absl::InvalidArgumentError("give --ip (the offending address) or --host (the "
                                   "affected host), or both"));
  }
  auto client = OperatorClient::create(g);
  if (!client.ok()) return bad(client.status());
  v1::SubmitSignalResponse resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().SubmitSignal(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("signal", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  io.out << fmt::format("signal {}{}: {}\n", resp.signal_id(), inTenant(resp.tenant()),
                        controller::dispositionText(resp.disposition()));
  printActions(io.out, resp.actions());
  return kOk;
}

int signalsCommand(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string since;
  uint32_t limit = 0;
  po::options_description opts("signals [--since DURATION] [--limit N]");
  opts.add_options()("since", po::value(&since), "only signals of the last DURATION (e.g. 1h)")(
      "limit", po::value(&limit), "at most N signals (default 100)");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("signals", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  v1::ListSignalsRequest req;
  if (!since.empty()) {
    auto d = parseDuration("--since", since);
    if (!d.ok()) {
      io.err << "bulkhead signals: " << d.status().message() << "\n";
      return kUsage;
    }
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    req.set_since_unix_ms(std::max<int64_t>(0, now - d->count()));
  }
  req.set_limit(limit);
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead signals: " << client.status().message() << "\n";
    return kUsage;
  }
  v1::ListSignalsResponse resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().ListSignals(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("signals", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"RECEIVED", "SIGNAL", "FROM", "SOURCE", "RULE", "ADDRESSES", "HOST", "CAUSED"}};
  std::vector<std::string> tenants;
  for (const v1::SignalRecord& r : resp.signals()) {
    tenants.push_back(r.tenant());
    std::string addresses;
    for (const std::string& a : r.signal().addresses())
      addresses += (addresses.empty() ? "" : ",") + a;
    std::string caused(controller::dispositionText(r.disposition()));
    for (const v1::SignalAction& a : r.actions()) {
      caused += fmt::format("; {} {} {}: {}", a.playbook(), a.action(), a.target(), a.outcome());
    }
    rows.push_back({utcTime(r.received_unix_ms()), r.signal_id(), r.delivered_by(),
                    std::string(controller::signalSourceName(r.signal().source())),
                    r.signal().rule(), addresses.empty() ? "-" : addresses,
                    r.signal().host().empty() ? "-" : r.signal().host(), caused});
  }
  addTenantColumn(rows, 2, tenants);
  printTable(io.out, rows);
  return kOk;
}

std::vector<std::string> linesOf(std::string_view text) {
  std::vector<std::string> lines;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

int playbookCheck(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string dir;
  po::options_description opts("playbook check DIR");
  opts.add_options()("dir", po::value(&dir)->required(), "playbook directory");
  po::positional_options_description pos;
  pos.add("dir", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("playbook check", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto set = controller::loadPlaybookDir(dir);
  if (!set.ok()) {
    auto errors = linesOf(std::string(set.status().message()));
    if (g.json) {
      printJson(io.out, nlohmann::json{{"ok", false}, {"dir", dir}, {"errors", errors}});
    } else {
      for (const auto& e : errors) io.err << e << "\n";
    }
    return kUsage;
  }
  auto actionsOf = [](const controller::Playbook& p) {
    std::string out;
    for (const auto& a : p.actions) {
      out += fmt::format("{}{} ({})", out.empty() ? "" : ", ", controller::actionKindName(a.kind),
                         controller::scopeName(a.scope));
    }
    return out;
  };
  auto sourcesOf = [](const controller::Playbook& p) {
    std::string out;
    for (auto s : p.match.sources) {
      out += (out.empty() ? "" : ",") + std::string(controller::signalSourceName(s));
    }
    return out.empty() ? std::string("any") : out;
  };
  if (g.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& p : set->playbooks) {
      list.push_back({{"name", p.name},
                      {"file", p.file},
                      {"sources", sourcesOf(p)},
                      {"rule", p.match.rule_text},
                      {"actions", actionsOf(p)},
                      {"simulate", p.simulate},
                      {"description", p.description}});
    }
    printJson(io.out, nlohmann::json{{"ok", true}, {"dir", dir}, {"playbooks", list}});
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {{"PLAYBOOK", "SOURCES", "RULE", "ACTIONS", "FILE"}};
  for (const auto& p : set->playbooks) {
    rows.push_back({p.name + (p.simulate ? " (simulate)" : ""), sourcesOf(p),
                    p.match.rule_text.empty() ? "any" : p.match.rule_text, actionsOf(p), p.file});
  }
  printTable(io.out, rows);
  io.out << fmt::format("{}: {} playbooks, all valid\n", dir, set->playbooks.size());
  return kOk;
}

int playbookTest(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string file, reporting_host;
  po::options_description opts("playbook test SIGNAL.json [--reporting-host HOST]");
  opts.add_options()("file", po::value(&file)->required(), "the signal, as JSON")(
      "reporting-host", po::value(&reporting_host), "as if this host's agent had reported it");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("playbook test", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  std::ifstream in(file);
  if (!in) {
    io.err << "bulkhead playbook test: " << file << ": cannot read\n";
    return kUsage;
  }
  nlohmann::json doc = nlohmann::json::parse(in, nullptr, false);
  if (doc.is_discarded()) {
    io.err << "bulkhead playbook test: " << file << ": not valid JSON\n";
    return kUsage;
  }
  auto signal = signalFromJson(doc);
  if (!signal.ok()) {
    io.err << "bulkhead playbook test: " << file << ": " << signal.status().message() << "\n";
    return kUsage;
  }
  v1::PreviewSignalRequest req;
  *req.mutable_signal() = *signal;
  req.set_reporting_host(reporting_host);
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead playbook test: " << client.status().message() << "\n";
    return kUsage;
  }
  v1::SubmitSignalResponse resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().PreviewSignal(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("playbook test", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  io.out << fmt::format("would be{}: {} (nothing was changed)\n", inTenant(resp.tenant()),
                        controller::dispositionText(resp.disposition()));
  printActions(io.out, resp.actions());
  return kOk;
}

int approvalsCommand(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  bool all = false;
  uint32_t limit = 0;
  po::options_description opts("approvals [--all] [--limit N]");
  opts.add_options()("all", po::bool_switch(&all),
                     "the most recent in any state (default: pending only)")(
      "limit", po::value(&limit), "at most N approvals (default 100)");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("approvals", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  v1::ListApprovalsRequest req;
  req.set_all(all);
  req.set_limit(limit);
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead approvals: " << client.status().message() << "\n";
    return kUsage;
  }
  v1::ListApprovalsResponse resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().ListApprovals(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("approvals", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  if (resp.approvals().empty()) {
    io.out << (all ? "no approvals\n" : "no approvals pending\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {{"APPROVAL", "STATE", "REQUESTED", "EXPIRES",
                                                 "SIGNAL", "REQUESTED BY", "PLAYBOOK", "ACTION",
                                                 "TARGET", "DETAIL", "DECIDED"}};
  std::vector<std::string> tenants;
  for (const v1::Approval& a : resp.approvals()) {
    tenants.push_back(a.tenant());
    std::string decided = "-";
    if (a.state() != v1::APPROVAL_STATE_PENDING) {
      decided =
          fmt::format("{} at {}: {}", a.decided_by(), utcTime(a.decided_unix_ms()), a.reason());
      if (!a.outcome().empty()) decided += "; " + a.outcome();
    }
    rows.push_back({a.approval_id(), std::string(controller::approvalStateText(a.state())),
                    utcTime(a.requested_unix_ms()), utcTime(a.expires_unix_ms()), a.signal_id(),
                    a.requested_by(), a.playbook(), a.action().action(), a.action().target(),
                    a.action().detail(), decided});
  }
  addTenantColumn(rows, 2, tenants);
  printTable(io.out, rows);
  return kOk;
}

// approve and reject: one approval id and a reason.
int decideCommand(const std::string& command, const GlobalOptions& g,
                  const std::vector<std::string>& args, Io& io) {
  std::string id, reason;
  po::options_description opts(command + " APPROVAL_ID --reason TEXT");
  opts.add_options()("id", po::value(&id)->required(), "the approval (from `bulkhead approvals`)")(
      "reason", po::value(&reason), "why (incident or ticket); required, audited");
  po::positional_options_description pos;
  pos.add("id", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs(command, args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (id.empty()) {
    io.err << "bulkhead " << command << ": APPROVAL_ID: required\n";
    return kUsage;
  }
  if (reason.empty()) {
    io.err << "bulkhead " << command << ": --reason: required (an incident or ticket id)\n";
    return kUsage;
  }
  v1::DecideApprovalRequest req;
  req.set_approval_id(id);
  req.set_reason(reason);
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead " << command << ": " << client.status().message() << "\n";
    return kUsage;
  }
  v1::Approval resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = command == "approve" ? (*client)->stub().Approve(ctx.get(), req, &resp)
                                         : (*client)->stub().Reject(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError(command, (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  io.out << fmt::format("approval {}: {} by {}: {} {} {} (signal {}): {}\n", resp.approval_id(),
                        controller::approvalStateText(resp.state()), resp.decided_by(),
                        resp.playbook(), resp.action().action(), resp.action().target(),
                        resp.signal_id(), resp.outcome());
  return kOk;
}

int approveCommand(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  return decideCommand("approve", g, args, io);
}

int rejectCommand(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  return decideCommand("reject", g, args, io);
}

}  // namespace

void addSignalCommands(std::map<std::string, CommandInfo>& table) {
  table["signal"] = {"report a detection; the controller's playbooks decide what it causes",
                     signalCommand};
  table["signals"] = {"recent signals and what each caused", signalsCommand};
  table["playbook check"] = {"validate a directory of playbooks (file:line errors)", playbookCheck};
  table["playbook test"] = {"what a signal (JSON file) would do now, changing nothing",
                            playbookTest};
  table["approvals"] = {"automatic actions awaiting a responder's approval", approvalsCommand};
  table["approve"] = {"approve a pending action: it runs as you", approveCommand};
  table["reject"] = {"reject a pending action: it never runs", rejectCommand};
}

}  // namespace bulkhead::cli
