// Incidents, the unit of a response (controller/service/incidents.h):
//   bulkhead incident open ID --title TEXT [--severity S] [--detected-at TIME]
//   bulkhead incident list
//   bulkhead incident show ID            the timeline and the regulator clock
//   bulkhead incident note ID TEXT
//   bulkhead incident close ID --summary TEXT
//   bulkhead incident report ID --format html|pdf|json|md --output FILE
//                                        the signed report: FILE, FILE.manifest, FILE.sig,
//                                        FILE.crt (evidence/report_manifest.h)
//   bulkhead incident verify-report FILE [--ca CA.crt]
// Any command run with the global --incident ID (or BULKHEAD_INCIDENT) is recorded as part of
// the incident. The tenant is the global --tenant (or BULKHEAD_TENANT).
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/files.h"
#include "cli/operator_client.h"
#include "cli/output.h"
#include "common/identity.h"
#include "common/text.h"
#include "evidence/hash.h"
#include "evidence/report_manifest.h"
#include "evidence/signing.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

namespace v1 = bulkhead::v1;

// "3d 4h 12m", "4h 12m", "12m" (whole minutes), or "42s" under a minute (`ms` >= 0).
std::string spanText(int64_t ms) {
  const int64_t minutes = ms / 60000;
  const int64_t days = minutes / (int64_t{24} * 60);
  const int64_t hours = minutes / 60 % 24;
  if (days > 0) return fmt::format("{}d {}h {}m", days, hours, minutes % 60);
  if (hours > 0) return fmt::format("{}h {}m", hours, minutes % 60);
  if (minutes > 0) return fmt::format("{}m", minutes);
  return fmt::format("{}s", ms / 1000);
}

// The regulator clock of an incident at `now`: time since detection and where the 72-hour mark
// (GDPR article 33) stands.
std::string regulatorClock(const v1::Incident& incident, int64_t deadline, int64_t now) {
  const int64_t end = incident.closed_unix_ms() != 0 ? incident.closed_unix_ms() : now;
  std::string text = fmt::format("{} since detection ({})",
                                 spanText(std::max<int64_t>(0, end - incident.detected_unix_ms())),
                                 utcTime(incident.detected_unix_ms()));
  if (now < deadline) {
    text += fmt::format("; 72-hour mark {} (in {})", utcTime(deadline), spanText(deadline - now));
  } else {
    text +=
        fmt::format("; 72-hour mark {} PASSED {} ago", utcTime(deadline), spanText(now - deadline));
  }
  return text;
}

absl::StatusOr<v1::IncidentSeverity> parseSeverity(const std::string& text) {
  if (text.empty() || text == "medium") return v1::INCIDENT_SEVERITY_MEDIUM;
  if (text == "low") return v1::INCIDENT_SEVERITY_LOW;
  if (text == "high") return v1::INCIDENT_SEVERITY_HIGH;
  if (text == "critical") return v1::INCIDENT_SEVERITY_CRITICAL;
  return absl::InvalidArgumentError(fmt::format(
      "--severity: invalid value \"{}\": low, medium, high or critical", text.substr(0, 64)));
}

// RFC 3339 ("2026-12-05T18:30:00Z", "2026-12-05T19:30:00+01:00") to Unix milliseconds.
absl::StatusOr<int64_t> parseTimestamp(const std::string& flag, const std::string& text) {
  absl::Time t;
  std::string why;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &why)) {
    return absl::InvalidArgumentError(
        fmt::format("{}: invalid value \"{}\": an RFC 3339 time such as 2026-12-05T18:30:00Z", flag,
                    text.substr(0, 64)));
  }
  return absl::ToUnixMillis(t);
}

void printIncident(std::ostream& out, const v1::Incident& i) {
  out << fmt::format("incident {} ({}) in tenant {}: {}\n", i.incident_id(), enumText(i.state()),
                     i.tenant(), escapeNonPrintable(i.title()));
  out << fmt::format("  severity    {}\n", enumText(i.severity()));
  out << fmt::format("  opened      {} by {}\n", utcTime(i.opened_unix_ms()),
                     escapeNonPrintable(i.opened_by()));
  out << fmt::format("  detected    {}\n", utcTime(i.detected_unix_ms()));
  if (i.state() == v1::INCIDENT_STATE_CLOSED) {
    out << fmt::format("  closed      {} by {}: {}\n", utcTime(i.closed_unix_ms()),
                       escapeNonPrintable(i.closed_by()), escapeNonPrintable(i.summary()));
  }
}

int incidentOpen(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id, title, severity, detected;
  po::options_description opts(
      "incident open ID --title TEXT [--severity low|medium|high|critical] [--detected-at TIME]");
  opts.add_options()("id", po::value(&id)->required(), "the incident's id, e.g. INC-42")(
      "title", po::value(&title), "what happened, in a line; required")(
      "severity", po::value(&severity), "low, medium (default), high or critical")(
      "detected-at", po::value(&detected),
      "when the breach was detected (RFC 3339, e.g. 2026-12-05T18:30:00Z); default now");
  po::positional_options_description pos;
  pos.add("id", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("incident open", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto bad = [&](const std::string& message) {
    io.err << "bulkhead incident open: " << message << "\n";
    return kUsage;
  };
  if (!isValidName(id)) {
    return bad(fmt::format("ID: invalid value \"{}\": 1-63 characters of [A-Za-z0-9._-]",
                           escapeNonPrintable(id.substr(0, 64))));
  }
  if (title.empty()) return bad("--title: required");
  auto sev = parseSeverity(severity);
  if (!sev.ok()) return bad(std::string(sev.status().message()));
  v1::OpenIncidentRequest req;
  req.set_incident_id(id);
  req.set_title(title);
  req.set_severity(*sev);
  if (!detected.empty()) {
    auto at = parseTimestamp("--detected-at", detected);
    if (!at.ok()) return bad(std::string(at.status().message()));
    req.set_detected_unix_ms(*at);
  }
  return callAndPrint<v1::Incident>(
      "incident open", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::Incident* resp) {
        return stub.OpenIncident(ctx, req, resp);
      },
      [&](const v1::Incident& i) {
        io.out << fmt::format(
            "incident {} opened in tenant {}. Act on it with --incident {} (or "
            "BULKHEAD_INCIDENT={}); bulkhead incident show {} is its timeline\n",
            i.incident_id(), i.tenant(), i.incident_id(), i.incident_id(), i.incident_id());
      });
}

int incidentList(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  po::options_description opts("incident list");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("incident list", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  return callAndPrint<v1::ListIncidentsResponse>(
      "incident list", g, io,
      [](auto& stub, grpc::ClientContext* ctx, v1::ListIncidentsResponse* resp) {
        return stub.ListIncidents(ctx, v1::ListIncidentsRequest(), resp);
      },
      [&](const v1::ListIncidentsResponse& resp) {
        if (resp.incidents_size() == 0) {
          io.out << "no incidents\n";
          return;
        }
        std::vector<std::vector<std::string>> rows = {
            {"INCIDENT", "STATE", "SEVERITY", "DETECTED", "OPENED BY", "TITLE"}};
        std::vector<std::string> tenants;
        for (const v1::Incident& i : resp.incidents()) {
          rows.push_back({i.incident_id(), enumText(i.state()), enumText(i.severity()),
                          utcTime(i.detected_unix_ms()), i.opened_by(), i.title()});
          tenants.push_back(i.tenant());
        }
        addTenantColumn(rows, 1, tenants);
        printTable(io.out, rows);
      });
}

int incidentShow(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id;
  po::options_description opts("incident show ID");
  opts.add_options()("id", po::value(&id)->required(), "the incident's id");
  po::positional_options_description pos;
  pos.add("id", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("incident show", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  v1::ShowIncidentRequest req;
  req.set_incident_id(id);
  return callAndPrint<v1::ShowIncidentResponse>(
      "incident show", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::ShowIncidentResponse* resp) {
        return stub.ShowIncident(ctx, req, resp);
      },
      [&](const v1::ShowIncidentResponse& resp) {
        printIncident(io.out, resp.incident());
        io.out << "  clock       "
               << regulatorClock(resp.incident(), resp.regulator_deadline_unix_ms(),
                                 resp.now_unix_ms())
               << "\n\nhosts isolated\n";
        if (resp.hosts_size() == 0) io.out << "  none isolated in this incident\n";
        std::vector<std::vector<std::string>> hosts = {
            {"HOST", "ISOLATED", "RELEASED", "ISOLATED FOR", "FLOWS CUT"}};
        for (const v1::IncidentHost& h : resp.hosts()) {
          const bool released = h.released_unix_ms() != 0;
          const int64_t end = released ? h.released_unix_ms() : resp.now_unix_ms();
          hosts.push_back({h.host_id(), utcTime(h.isolated_unix_ms()),
                           released ? utcTime(h.released_unix_ms()) : "still isolated",
                           spanText(std::max<int64_t>(0, end - h.isolated_unix_ms())) +
                               (released ? "" : " so far"),
                           std::to_string(h.flows_cut())});
        }
        if (resp.hosts_size() > 0) printTable(io.out, hosts);
        io.out << "\ntimeline\n";
        std::vector<std::vector<std::string>> rows = {
            {"TIME", "WHO", "ACTION", "TARGET", "OUTCOME", "WHY", "DETAIL"}};
        for (const v1::AuditRecord& r : resp.records()) {
          rows.push_back({utcTime(r.at_unix_ms()), r.operator_(), r.action(), r.target(),
                          r.outcome(), r.reason(), r.detail()});
        }
        printTable(io.out, rows);
        io.out << "\nevidence\n";
        if (resp.evidence_size() == 0) io.out << "  none captured for this incident\n";
        for (const v1::EvidenceRecord& e : resp.evidence()) {
          io.out << fmt::format("  {} sha256:{} from {}, collected {}, signature {}\n",
                                e.capture_id(), e.evidence_id(), e.host_id(),
                                utcTime(e.collected_at_unix_ms()),
                                e.signature_ok() ? "ok" : "NOT VALID");
          for (const v1::CustodyEvent& c : e.custody()) {
            io.out << fmt::format("    {} {} {}{}\n", utcTime(c.at_unix_ms()),
                                  escapeNonPrintable(c.actor()), escapeNonPrintable(c.action()),
                                  c.detail().empty() ? "" : ": " + escapeNonPrintable(c.detail()));
          }
        }
      });
}

int incidentNote(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id, text;
  po::options_description opts("incident note ID TEXT");
  opts.add_options()("id", po::value(&id)->required(), "the incident's id")(
      "text", po::value(&text)->required(), "the note");
  po::positional_options_description pos;
  pos.add("id", 1).add("text", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("incident note", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  v1::IncidentNoteRequest req;
  req.set_incident_id(id);
  req.set_text(text);
  return callAndPrint<v1::Incident>(
      "incident note", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::Incident* resp) {
        return stub.NoteIncident(ctx, req, resp);
      },
      [&](const v1::Incident& i) {
        io.out << fmt::format("note added to incident {}\n", i.incident_id());
      });
}

int incidentClose(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id, summary;
  po::options_description opts("incident close ID --summary TEXT");
  opts.add_options()("id", po::value(&id)->required(), "the incident's id")(
      "summary", po::value(&summary), "what happened and what was done; required");
  po::positional_options_description pos;
  pos.add("id", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("incident close", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (summary.empty()) {
    io.err << "bulkhead incident close: --summary: required\n";
    return kUsage;
  }
  v1::CloseIncidentRequest req;
  req.set_incident_id(id);
  req.set_summary(summary);
  return callAndPrint<v1::Incident>(
      "incident close", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::Incident* resp) {
        return stub.CloseIncident(ctx, req, resp);
      },
      [&](const v1::Incident& i) {
        io.out << fmt::format("incident {} closed; later calls with --incident {} are refused\n",
                              i.incident_id(), i.incident_id());
      });
}

// What a report's three companion files are called.
std::vector<std::string> reportFiles(const std::string& file) {
  return {file, file + ".manifest", file + ".sig", file + ".crt"};
}

// The manifest's facts once `manifest` is checked against `signature` and `cert`, and `file`
// against the manifest's size and SHA-256. With `ca_pem`, the signer must also be the fleet's
// controller. The error names what does not match.
absl::StatusOr<evidence::ReportManifest> checkReport(const std::string& file,
                                                     const std::string& manifest,
                                                     const std::string& signature,
                                                     const std::string& cert,
                                                     const std::string& ca_pem) {
  if (auto st = evidence::checkSignature(cert, manifest, signature); !st.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("the signature does not match the manifest: the manifest was altered ({})",
                    std::string(st.message())));
  }
  if (!ca_pem.empty()) {
    if (auto st = evidence::checkControllerSigner(cert, ca_pem); !st.ok()) {
      return absl::PermissionDeniedError(std::string(st.message()));
    }
  }
  auto m = evidence::parseReportManifest(manifest);
  if (!m.ok()) return m.status();
  if (file.size() != m->size || evidence::sha256Hex(file) != m->sha256) {
    return absl::InvalidArgumentError(fmt::format(
        "the report does not match its signed manifest (sha256 {}, {} bytes; the manifest "
        "says {}, {} bytes): the report was altered",
        evidence::sha256Hex(file), file.size(), m->sha256, m->size));
  }
  return m;
}

int incidentReport(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id, format, output;
  po::options_description opts("incident report ID --format F --output FILE");
  opts.add_options()("id", po::value(&id)->required(), "the incident's id")(
      "format", po::value(&format)->value_name("F"), "html, pdf, json or md; required")(
      "output", po::value(&output)->value_name("FILE"),
      "the report; FILE.manifest (its SHA-256, signed), FILE.sig and FILE.crt (the "
      "controller's signature and certificate) are written beside it; required");
  po::positional_options_description pos;
  pos.add("id", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("incident report", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  const std::map<std::string, v1::IncidentReportFormat> formats = {
      {"html", v1::INCIDENT_REPORT_FORMAT_HTML},
      {"pdf", v1::INCIDENT_REPORT_FORMAT_PDF},
      {"json", v1::INCIDENT_REPORT_FORMAT_JSON},
      {"md", v1::INCIDENT_REPORT_FORMAT_MARKDOWN}};
  auto bad = [&](const std::string& message) {
    io.err << "bulkhead incident report: " << message << "\n";
    return kUsage;
  };
  if (format.empty()) return bad("--format: required (html, pdf, json or md)");
  if (!formats.contains(format)) {
    return bad(fmt::format("--format: invalid value \"{}\": html, pdf, json or md",
                           escapeNonPrintable(format)));
  }
  if (output.empty()) return bad("--output: required (the report file)");
  for (const auto& path : reportFiles(output)) {
    std::error_code ec;
    if (std::filesystem::symlink_status(path, ec).type() != std::filesystem::file_type::not_found) {
      return bad(fmt::format("--output: {} exists; nothing written", path));
    }
  }
  auto client = connectClient("incident report", g, io.err);
  if (!client) return kUsage;
  v1::IncidentReportRequest req;
  req.set_incident_id(id);
  req.set_format(formats.at(format));
  // Printing a PDF takes a browser's start: more than the default call time.
  auto ctx = client->context(std::chrono::minutes(2));
  auto reader = client->stub().ReportIncident(ctx.get(), req);
  v1::IncidentReportChunk chunk;
  std::string file, manifest, signature, cert;
  while (reader->Read(&chunk)) {
    file += chunk.data();
    if (!chunk.manifest().empty()) manifest = chunk.manifest();
    if (!chunk.signature().empty()) signature = chunk.signature();
    if (!chunk.certificate_pem().empty()) cert = chunk.certificate_pem();
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return reportRpcError("incident report", client->controller(), st, io.err);
  auto checked = checkReport(file, manifest, signature, cert, client->identity().ca_pem);
  if (!checked.ok()) {
    io.err << "bulkhead incident report: the answer does not check out: "
           << checked.status().message() << "; nothing written\n";
    return kFailed;
  }
  const std::vector<std::string> paths = reportFiles(output);
  const std::vector<const std::string*> data = {&file, &manifest, &signature, &cert};
  for (size_t i = 0; i < paths.size(); ++i) {
    if (auto s = writeNewFile(paths[i], *data[i]); !s.ok()) {
      io.err << "bulkhead incident report: " << s.message() << "\n";
      return kFailed;
    }
  }
  if (g.json) {
    printJson(io.out, {{"output", output},
                       {"manifest", paths[1]},
                       {"signature", paths[2]},
                       {"certificate", paths[3]},
                       {"incident", checked->incident},
                       {"tenant", checked->tenant},
                       {"format", checked->format},
                       {"size", checked->size},
                       {"sha256", checked->sha256},
                       {"generated", checked->generated}});
  } else {
    io.out << fmt::format(
        "incident {} report ({}, {} bytes, sha256 {}) written to {}\n"
        "signed by controller {}: {}, {}, {}; check it with `bulkhead incident verify-report "
        "{}`\n",
        checked->incident, checked->format, checked->size, checked->sha256, output,
        checked->controller, paths[1], paths[2], paths[3], output);
  }
  return kOk;
}

int incidentVerifyReport(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string file, ca;
  po::options_description opts("incident verify-report FILE");
  opts.add_options()("file", po::value(&file)->required(), "the report")(
      "ca", po::value(&ca)->value_name("CA.crt"),
      "the fleet CA certificate the controller's is checked against (default: the "
      "identity's ca.crt)");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("incident verify-report", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  if (ca.empty() && !g.identity.empty()) ca = (std::filesystem::path(g.identity) / "ca.crt");
  if (ca.empty()) {
    io.err << "bulkhead incident verify-report: --ca: required (the fleet CA certificate), "
              "or --identity DIR holding ca.crt\n";
    return kUsage;
  }
  std::vector<std::string> contents;
  for (const auto& path : reportFiles(file)) {
    auto text = readWholeFile(path);
    if (!text.ok()) {
      io.err << "bulkhead incident verify-report: " << text.status().message() << "\n";
      return kUsage;
    }
    contents.push_back(*std::move(text));
  }
  auto ca_pem = readWholeFile(ca);
  if (!ca_pem.ok()) {
    io.err << "bulkhead incident verify-report: --ca: " << ca_pem.status().message() << "\n";
    return kUsage;
  }
  auto checked = checkReport(contents[0], contents[1], contents[2], contents[3], *ca_pem);
  if (g.json) {
    nlohmann::json doc = {{"file", file}, {"ok", checked.ok()}};
    if (checked.ok()) {
      doc.update({{"incident", checked->incident},
                  {"tenant", checked->tenant},
                  {"format", checked->format},
                  {"size", checked->size},
                  {"sha256", checked->sha256},
                  {"generated", checked->generated},
                  {"controller", checked->controller}});
    } else {
      doc["problem"] = std::string(checked.status().message());
    }
    printJson(io.out, doc);
  } else if (checked.ok()) {
    io.out << fmt::format(
        "{}: verified: the report of incident {} (tenant {}, {}, sha256 {}), generated {}, "
        "signed by controller {}\n",
        file, checked->incident, checked->tenant, checked->format, checked->sha256,
        checked->generated, checked->controller);
  } else {
    io.err << fmt::format("bulkhead incident verify-report: {}: NOT VERIFIED: {}\n", file,
                          std::string(checked.status().message()));
  }
  return checked.ok() ? kOk : kFailed;
}

}  // namespace

void addIncidentCommands(std::map<std::string, CommandInfo>& table) {
  table["incident open"] = {"ID --title TEXT: open an incident to act under", incidentOpen};
  table["incident list"] = {"the incidents of the tenant", incidentList};
  table["incident show"] = {"ID: the incident's timeline, evidence and regulator clock",
                            incidentShow};
  table["incident note"] = {"ID TEXT: add a note to an open incident", incidentNote};
  table["incident close"] = {"ID --summary TEXT: close an incident", incidentClose};
  table["incident report"] = {
      "ID --format html|pdf|json|md --output FILE: the incident's report, signed", incidentReport};
  table["incident verify-report"] = {
      "FILE: check a report against its signed manifest and the fleet CA", incidentVerifyReport};
}

}  // namespace bulkhead::cli
