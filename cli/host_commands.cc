// `bulkhead hosts`, `bulkhead status HOST`, `bulkhead audit`.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/files.h"
#include "cli/operator_client.h"
#include "cli/output.h"
#include "common/format.h"
#include "common/identity.h"
#include "common/parse.h"
#include "evidence/signing.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string joinLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  const std::string out = labelsText(Labels(labels.begin(), labels.end()));
  return out.empty() ? "-" : out;
}

std::string joinList(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : " ") + s;
  return out.empty() ? "-" : out;
}

// "2026-12-12 00:00:00 UTC (in 9 days)" for a certificate's expiry.
std::string certExpiry(int64_t not_after_ms, int64_t now_ms) {
  const int64_t days = (not_after_ms - now_ms) / 86'400'000;
  if (not_after_ms <= now_ms) return fmt::format("{} (EXPIRED)", utcTime(not_after_ms));
  return fmt::format("{} (in {} day{})", utcTime(not_after_ms), days, days == 1 ? "" : "s");
}

// Connects or prints why not; returns nullptr after printing.
int hosts(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string selector;
  po::options_description opts("hosts");
  opts.add_options()("selector", po::value(&selector), "only hosts with these labels (k=v[,k=v])");
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("hosts", args, opts, {}, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (vm.count("selector") != 0) {
    if (auto s = parseSelector("--selector", selector); !s.ok()) {
      io.err << "bulkhead hosts: " << s.status().message() << "\n";
      return kUsage;
    }
  }
  auto client = connectClient("hosts", g, io.err);
  if (!client) return kUsage;
  v1::ListHostsRequest req;
  req.set_selector(selector);
  v1::ListHostsResponse resp;
  auto ctx = client->context();
  grpc::Status st = client->stub().ListHosts(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("hosts", client->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"HOST", "STATE", "CONTAINMENT", "LAST SEEN", "ADDRESSES", "LABELS", "AGENT"}};
  std::vector<std::string> tenants;
  int64_t now = nowMs();
  for (const auto& h : resp.hosts()) {
    std::string containment = h.isolated() ? "isolated" : "open";
    if (h.desired_generation() != h.enforced_generation()) containment += " (pending)";
    rows.push_back({h.host_id(), h.online() ? "online" : "offline", containment,
                    ago(h.last_seen_unix_ms(), now), joinList(h.addresses()),
                    joinLabels(h.labels()), h.agent_version()});
    tenants.push_back(h.tenant());
  }
  addTenantColumn(rows, 1, tenants);
  printTable(io.out, rows);
  bool expiring_header = false;
  for (const auto& h : resp.hosts()) {
    if (!h.cert_expiring()) continue;
    if (!expiring_header) {
      io.out << "\ncertificates expiring soon (renew with `bulkhead pki issue agent "
                "--replace`):\n";
    }
    expiring_header = true;
    io.out << "  " << h.host_id() << ": agent certificate expires "
           << certExpiry(h.cert_not_after_unix_ms(), now) << "\n";
  }
  return kOk;
}

std::string ports(const v1::PortRange& r) {
  if (r.first() == 0 && r.last() == 0) return "any";
  if (r.first() == r.last()) return std::to_string(r.first());
  return fmt::format("{}-{}", r.first(), r.last());
}

int status(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string host;
  po::options_description opts("status HOST");
  opts.add_options()("host", po::value(&host)->required(), "host id");
  po::positional_options_description pos;
  pos.add("host", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("status", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto client = connectClient("status", g, io.err);
  if (!client) return kUsage;
  v1::GetHostRequest req;
  req.set_host(host);
  v1::HostStatus resp;
  auto ctx = client->context();
  grpc::Status st = client->stub().GetHost(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("status", client->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  const auto& h = resp.host();
  int64_t now = nowMs();
  std::vector<std::vector<std::string>> rows = {
      {"host", h.host_id()},
      {"hostname", h.hostname()},
      {"tenant", tenantOrDefault(h.tenant())},
      {"state", h.online() ? "online" : "offline"},
      {"last seen",
       fmt::format("{} ({})", utcTime(h.last_seen_unix_ms()), ago(h.last_seen_unix_ms(), now))},
      {"addresses", joinList(h.addresses())},
      {"labels",
       !h.labels_set_by().empty()
           ? fmt::format("{} (set by {}; the agent reports: {})", joinLabels(h.labels()),
                         h.labels_set_by(),
                         h.reported_labels().empty() ? "none" : joinLabels(h.reported_labels()))
       : h.labels_from_enrollment()
           ? fmt::format("{} (from its join token; the agent reports: {})", joinLabels(h.labels()),
                         h.reported_labels().empty() ? "none" : joinLabels(h.reported_labels()))
           : joinLabels(h.labels())},
      {"os", h.os()},
      {"agent", h.agent_version()},
  };
  if (h.cert_not_after_unix_ms() != 0) {
    rows.push_back({"certificate", fmt::format("expires {}{}",
                                               certExpiry(h.cert_not_after_unix_ms(), now),
                                               h.cert_expiring() ? ", EXPIRING SOON" : "")});
  }
  const auto& iso = resp.desired().isolation();
  std::string isolation = iso.enabled() ? "isolated" : "open";
  if (iso.enabled() && iso.expires_at_unix_ms() > 0) {
    isolation += fmt::format(" until {}", utcTime(iso.expires_at_unix_ms()));
  }
  if (iso.enabled() && !iso.reason().empty()) {
    isolation += fmt::format(" (reason: {}, by {})", iso.reason(), iso.requested_by());
  }
  rows.push_back({"isolation", isolation});
  rows.push_back({"exemptions", joinList(iso.exemption_sets())});
  rows.push_back({"generation", fmt::format("desired {}, enforced {}", h.desired_generation(),
                                            h.enforced_generation())});
  rows.push_back({"ruleset hash", h.ruleset_hash().empty() ? "-" : h.ruleset_hash()});
  const auto& rep = resp.last_report();
  if (rep.generation() != 0) {
    rows.push_back({"last apply",
                    fmt::format("generation {} {} at {}, {} flows cut{}", rep.generation(),
                                rep.ok() ? "ok" : "FAILED: " + rep.error(),
                                utcTime(rep.applied_at_unix_ms()), rep.flows_cut(),
                                rep.ok() ? "" : (rep.left_closed() ? " (left closed)"
                                                                   : " (left open)"))});
  }
  printTable(io.out, rows);
  if (iso.enabled() && iso.exemptions_size() > 0) {
    io.out << "\nexemptions in force:\n";
    std::vector<std::vector<std::string>> ex = {{"SET", "DIR", "PROTO", "REMOTE", "PORTS"}};
    for (const auto& r : iso.exemptions()) {
      ex.push_back({r.set_name(), r.direction() == v1::DIRECTION_IN ? "in" : "out",
                    enumText(r.protocol()), r.remote_cidr(), ports(r.ports())});
    }
    printTable(io.out, ex);
  }
  if (resp.tamper_events_size() > 0) {
    io.out << "\ntamper events:\n";
    std::vector<std::vector<std::string>> te = {{"AT", "WHAT", "RESTORED"}};
    for (const auto& t : resp.tamper_events()) {
      te.push_back({utcTime(t.at_unix_ms()), t.what(),
                    t.restored() ? fmt::format("yes, in {} ms", t.restore_latency_us() / 1000)
                                 : "NO"});
    }
    printTable(io.out, te);
  }
  return kOk;
}

// The head checkpoint of an export written by `audit export`, after checking FILE.sig (the
// controller's signature over FILE) with FILE.crt.
absl::StatusOr<v1::VerifyAuditRequest> checkpointOfExport(const std::string& file) {
  auto text = readWholeFile(file);
  if (!text.ok()) return text.status();
  auto sig = readWholeFile(file + ".sig");
  if (!sig.ok()) return sig.status();
  auto cert = readWholeFile(file + ".crt");
  if (!cert.ok()) return cert.status();
  if (auto s = evidence::checkSignature(*cert, *text, *sig); !s.ok()) {
    return absl::InvalidArgumentError(fmt::format(
        "{}: the signature in {}.sig does not match: the export was altered ({})", file, file,
        s.message()));
  }
  std::string_view body = *text;
  while (!body.empty() && body.back() == '\n') body.remove_suffix(1);
  auto nl = body.rfind('\n');
  auto head = nlohmann::json::parse(nl == std::string_view::npos ? body : body.substr(nl + 1),
                                    nullptr, false);
  if (!head.is_object() || head.value("type", "") != "head" ||
      !head.contains("last_id") || !head["last_id"].is_number_integer() ||
      !head.contains("last_hash") || !head["last_hash"].is_string()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: the last line is not an audit export head", file));
  }
  v1::VerifyAuditRequest req;
  req.set_checkpoint_id(head["last_id"].get<int64_t>());
  req.set_checkpoint_hash(head["last_hash"].get<std::string>());
  return req;
}

int verifyAudit(const GlobalOptions& g, OperatorClient& client, const v1::VerifyAuditRequest& req,
                Io& io) {
  v1::VerifyAuditResponse resp;
  auto ctx = client.context();
  grpc::Status st = client.stub().VerifyAudit(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("audit", client.controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
  } else if (resp.ok()) {
    io.out << "audit trail intact: " << resp.rows() << " rows, hash chain verified";
    if (resp.keyed()) {
      io.out << ", MACs verified";
      if (resp.unkeyed_rows() > 0) {
        io.out << " (" << resp.unkeyed_rows()
               << " older rows before keyed chaining: hash chain only)";
      }
    }
    if (req.checkpoint_id() > 0) {
      io.out << "; checkpoint row " << req.checkpoint_id() << " present, nothing missing";
    }
    io.out << "\n";
  } else {
    io.out << "audit trail ALTERED at row " << resp.first_bad_id() << ": " << resp.problem()
           << " (" << resp.rows() << " rows checked)\n";
  }
  return resp.ok() ? kOk : kFailed;
}

int audit(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  unsigned limit = 50;
  bool verify = false;
  std::string checkpoint;
  po::options_description opts("audit");
  opts.add_options()
      ("limit", po::value(&limit)->default_value(50), "newest N records")
      ("verify", po::bool_switch(&verify),
       "recompute the audit hash chain and MACs; exit 1 if any row was altered")
      ("checkpoint", po::value(&checkpoint)->value_name("FILE"),
       "with --verify: an earlier `audit export` file; rows missing after its head fail");
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("audit", args, opts, {}, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  v1::VerifyAuditRequest verify_req;
  if (!checkpoint.empty()) {
    if (!verify) {
      io.err << "bulkhead audit: --checkpoint: only with --verify\n";
      return kUsage;
    }
    auto req = checkpointOfExport(checkpoint);
    if (!req.ok()) {
      io.err << "bulkhead audit: --checkpoint: " << req.status().message() << "\n";
      return kUsage;
    }
    verify_req = *std::move(req);
  }
  auto client = connectClient("audit", g, io.err);
  if (!client) return kUsage;
  if (verify) return verifyAudit(g, *client, verify_req, io);
  if (limit == 0) limit = 50;
  // The newest `limit` rows, fetched newest page first (the controller bounds each page).
  std::vector<v1::ListAuditResponse> pages;
  size_t rows_read = 0;
  v1::ListAuditRequest req;
  while (rows_read < limit) {
    req.set_limit(static_cast<uint32_t>(limit - rows_read));
    v1::ListAuditResponse page;
    auto ctx = client->context();
    grpc::Status st = client->stub().ListAudit(ctx.get(), req, &page);
    if (!st.ok()) return reportRpcError("audit", client->controller(), st, io.err);
    rows_read += static_cast<size_t>(page.records_size());
    const int64_t next = page.next_before_id();
    const bool empty = page.records_size() == 0;
    pages.push_back(std::move(page));
    if (empty || next <= 0 || (req.before_id() > 0 && next >= req.before_id())) break;
    req.set_before_id(next);
  }
  v1::ListAuditResponse resp;  // oldest first
  for (auto it = pages.rbegin(); it != pages.rend(); ++it) {
    for (auto& r : *it->mutable_records()) *resp.add_records() = std::move(r);
  }
  if (!pages.empty()) resp.set_next_before_id(pages.back().next_before_id());
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "AT", "OPERATOR", "ACTION", "TARGET", "OUTCOME", "REASON"}};
  std::vector<std::string> tenants;
  for (const auto& r : resp.records()) {
    rows.push_back({std::to_string(r.id()), utcTime(r.at_unix_ms()), r.operator_(), r.action(),
                    r.target().empty() ? "-" : r.target(), r.outcome(),
                    r.reason().empty() ? "-" : r.reason()});
    tenants.push_back(r.tenant());
  }
  addTenantColumn(rows, 2, tenants);
  printTable(io.out, rows);
  return kOk;
}

int auditExport(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  int64_t since = 0;
  std::string output;
  po::options_description opts("audit export");
  opts.add_options()
      ("since", po::value(&since)->value_name("ID"), "first row id exported (default: all)")
      ("output", po::value(&output)->value_name("FILE")->required(),
       "the JSON-lines file; FILE.sig (signature) and FILE.crt (signer) are written beside it");
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("audit export", args, opts, {}, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (since < 0) {
    io.err << fmt::format("bulkhead audit export: --since: invalid value {}: use a row id\n",
                          since);
    return kUsage;
  }
  for (const auto& path : {output, output + ".sig", output + ".crt"}) {
    std::error_code ec;
    if (std::filesystem::symlink_status(path, ec).type() !=
        std::filesystem::file_type::not_found) {
      io.err << fmt::format("bulkhead audit export: --output: {} exists; nothing written\n",
                            path);
      return kUsage;
    }
  }
  auto client = connectClient("audit export", g, io.err);
  if (!client) return kUsage;
  v1::ExportAuditRequest req;
  req.set_since_id(since);
  auto ctx = client->context();
  auto reader = client->stub().ExportAudit(ctx.get(), req);
  v1::AuditExportChunk chunk;
  std::string text, signature, cert;
  while (reader->Read(&chunk)) {
    text += chunk.data();
    if (!chunk.signature().empty()) signature = chunk.signature();
    if (!chunk.certificate_pem().empty()) cert = chunk.certificate_pem();
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return reportRpcError("audit export", client->controller(), st, io.err);
  if (auto s = evidence::checkSignature(cert, text, signature); !s.ok()) {
    io.err << fmt::format("bulkhead audit export: the export does not match its signature: {}\n",
                          s.message());
    return kFailed;
  }
  for (const auto& [path, data] : {std::pair{output, &text}, std::pair{output + ".sig", &signature},
                                   std::pair{output + ".crt", &cert}}) {
    if (auto s = writeNewFile(path, *data); !s.ok()) {
      io.err << "bulkhead audit export: " << s.message() << "\n";
      return kFailed;
    }
  }
  auto head = checkpointOfExport(output);
  if (g.json) {
    nlohmann::json doc = {{"output", output},
                          {"signature", output + ".sig"},
                          {"certificate", output + ".crt"},
                          {"last_id", head.ok() ? head->checkpoint_id() : 0},
                          {"last_hash", head.ok() ? head->checkpoint_hash() : ""}};
    printJson(io.out, doc);
  } else {
    io.out << fmt::format("wrote {} ({} bytes), {}.sig, {}.crt; head row {} hash {}\n", output,
                          text.size(), output, output,
                          head.ok() ? head->checkpoint_id() : 0,
                          head.ok() ? head->checkpoint_hash() : "-");
  }
  return kOk;
}

int label(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string host, reason;
  std::vector<std::string> set, remove;
  po::options_description opts("label HOST K=V... [--remove K]... --reason R");
  opts.add_options()("host", po::value(&host)->required(), "host id (positional, first)")(
      "set", po::value(&set)->multitoken(), "K=V to add or replace (positional, repeatable)")(
      "remove", po::value(&remove), "a key to drop (repeatable)")(
      "reason", po::value(&reason), "why (ticket id); required, audited");
  po::positional_options_description pos;
  pos.add("host", 1).add("set", -1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("label", args, opts, pos, vm, io, &help)) return help ? kOk : kUsage;
  auto bad = [&](const std::string& message) {
    io.err << "bulkhead label: " << message << "\n";
    return kUsage;
  };
  if (reason.empty()) return bad("--reason: required (a ticket id)");
  if (set.empty() && remove.empty()) return bad("give at least one K=V or --remove K");
  v1::SetHostLabelsRequest req;
  req.set_host(host);
  for (const auto& text : set) {
    auto kv = parseLabel("K=V", text);
    if (!kv.ok()) return bad(std::string(kv.status().message()));
    (*req.mutable_set())[kv->first] = kv->second;
  }
  for (const auto& key : remove) req.add_remove(key);
  req.set_reason(reason);
  return callAndPrint<v1::HostSummary>(
      "label", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::HostSummary* resp) {
        return stub.SetHostLabels(ctx, req, resp);
      },
      [&](const v1::HostSummary& h) {
        io.out << fmt::format(
            "{}: labels {} (set by {}; the agent's claim {} is only shown)\n", h.host_id(),
            joinLabels(h.labels()), h.labels_set_by(),
            h.reported_labels().empty() ? "none" : joinLabels(h.reported_labels()));
      });
}

}  // namespace

void addHostCommands(std::map<std::string, CommandInfo>& table) {
  table["hosts"] = {"list hosts with their state, labels and containment", hosts};
  table["status"] = {"show one host: connection, containment, last apply, tamper events",
                     status};
  table["label"] = {"set a host's labels as the controller's truth (admins of its tenant)", label};
  table["audit"] = {"show the audit trail", audit};
  table["audit export"] = {"write the audit rows as a signed JSON-lines file", auditExport};
}

}  // namespace bulkhead::cli
