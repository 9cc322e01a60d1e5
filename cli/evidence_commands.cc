// `bulkhead capture HOST --reason TEXT` and `bulkhead evidence list|get|verify|show`.
//
// Exit status: 0 done; 1 the capture failed (host offline, no answer in time, agent error),
// a download did not match its evidence id, or a bundle did not verify; 2 bad usage, an
// unknown host or evidence id.
#include "cli/evidence_commands.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <utility>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "common/identity.h"
#include "common/parse.h"
#include "common/text.h"
#include "evidence/hash.h"
#include "evidence/summary.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::chrono::milliseconds kDownloadTimeout{3'600'000};

// "512", "64KiB", "100MiB", "1GiB" (also K, M, G).
bool parseByteSize(const std::string& flag, const std::string& text, uint64_t* out,
                   std::string* error) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  std::string unit = text.substr(digits);
  uint64_t mult = 0;
  if (unit.empty() || unit == "B") {
    mult = 1;
  } else if (unit == "K" || unit == "KiB") {
    mult = 1024;
  } else if (unit == "M" || unit == "MiB") {
    mult = 1024 * 1024;
  } else if (unit == "G" || unit == "GiB") {
    mult = 1024 * 1024 * 1024;
  }
  if (digits == 0 || digits > 12 || mult == 0) {
    *error = fmt::format("{}: invalid value \"{}\": expected bytes, e.g. 100MiB", flag, text);
    return false;
  }
  *out = std::stoull(text.substr(0, digits)) * mult;
  if (*out == 0) {
    *error = fmt::format("{}: invalid value \"{}\": must be more than 0", flag, text);
    return false;
  }
  return true;
}

// An evidence id or a prefix of at least 8 hex digits (the controller resolves prefixes).
bool validEvidenceId(const std::string& id) {
  if (id.size() < 8 || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

bool isByteStage(v1::CaptureStage stage) {
  return stage == v1::CAPTURE_STAGE_PACKING || stage == v1::CAPTURE_STAGE_UPLOADING;
}

}  // namespace

std::string captureProgressLine(const std::string& host, const v1::CommandProgress& p) {
  std::string line = fmt::format("capture {}:", host);
  if (p.capture_stage() != v1::CAPTURE_STAGE_UNSPECIFIED) {
    line += " " + enumText(p.capture_stage());
  }
  if (isByteStage(p.capture_stage())) {
    line += fmt::format(" {:.1f}/{:.1f} MiB", static_cast<double>(p.done()) / (1 << 20),
                        static_cast<double>(p.total()) / (1 << 20));
  } else if (p.total() > 0) {
    line += fmt::format(" {}/{}", p.done(), p.total());
  }
  if (!p.detail().empty()) line += " " + p.detail();
  return line;
}

namespace {

// An optional field of the typed summary as the document has it: the value, or null.
template <typename T>
json valueOrNull(bool has, const T& value) {
  return has ? json(value) : json(nullptr);
}

}  // namespace

json summaryDocument(const v1::EvidenceSummary& s) {
  json doc = json::object();
  doc["host_id"] = valueOrNull(s.has_host_id(), s.host_id());
  doc["capture_id"] = valueOrNull(s.has_capture_id(), s.capture_id());
  doc["collected_at_unix_ms"] = valueOrNull(s.has_collected_at_unix_ms(), s.collected_at_unix_ms());
  json findings = json::array();
  for (const auto& f : s.findings()) {
    json j = {{"kind", f.kind()}, {"severity", f.severity()}, {"detail", f.detail()}};
    if (f.has_pid()) j["pid"] = f.pid();
    if (f.comm_listed()) j["comm"] = valueOrNull(f.has_comm(), f.comm());
    if (f.exe_listed()) j["exe"] = valueOrNull(f.has_exe(), f.exe());
    findings.push_back(std::move(j));
  }
  doc["findings"] = std::move(findings);
  json deleted = json::array();
  for (const auto& d : s.deleted_executables()) {
    deleted.push_back({{"pid", d.pid()},
                       {"comm", valueOrNull(d.has_comm(), d.comm())},
                       {"exe", valueOrNull(d.has_exe(), d.exe())},
                       {"exe_sha256", valueOrNull(d.has_exe_sha256(), d.exe_sha256())},
                       {"recovered", valueOrNull(d.has_recovered(), d.recovered())},
                       {"memfd", d.memfd()}});
  }
  doc["deleted_executables"] = std::move(deleted);
  json remote = json::array();
  for (const auto& c : s.remote_connections()) {
    json j = {{"pid", valueOrNull(c.has_pid(), c.pid())},
              {"comm", valueOrNull(c.has_comm(), c.comm())},
              {"exe", valueOrNull(c.has_exe(), c.exe())},
              {"protocol", c.protocol()},
              {"local", c.local()},
              {"remote", c.remote()},
              {"state", c.state()}};
    if (c.has_note()) j["note"] = c.note();
    remote.push_back(std::move(j));
  }
  doc["remote_connections"] = std::move(remote);
  json listeners = json::array();
  for (const auto& l : s.unexpected_listeners()) {
    listeners.push_back({{"pid", valueOrNull(l.has_pid(), l.pid())},
                         {"comm", valueOrNull(l.has_comm(), l.comm())},
                         {"exe", valueOrNull(l.has_exe(), l.exe())},
                         {"protocol", l.protocol()},
                         {"local", l.local()},
                         {"why", l.why()}});
  }
  doc["unexpected_listeners"] = std::move(listeners);
  json logins = json::array();
  for (const auto& l : s.recent_logins()) {
    json j = {{"user", valueOrNull(l.has_user(), l.user())},
              {"from", valueOrNull(l.has_from(), l.from())},
              {"line", valueOrNull(l.has_line(), l.line())},
              {"at_unix_ms", valueOrNull(l.has_at_unix_ms(), l.at_unix_ms())}};
    if (l.current()) j["current"] = true;
    logins.push_back(std::move(j));
  }
  doc["recent_logins"] = std::move(logins);
  json top_sources = json::array();
  for (const auto& t : s.failed_logins().top_sources()) {
    top_sources.push_back({{"from", t.from()}, {"count", t.count()}});
  }
  doc["failed_logins"] = {{"count", s.failed_logins().count()},
                          {"top_sources", std::move(top_sources)}};
  json preload = json::array();
  for (const auto& p : s.preload()) {
    preload.push_back({{"source", valueOrNull(p.has_source(), p.source())},
                       {"entry", valueOrNull(p.has_entry(), p.entry())}});
  }
  doc["preload"] = std::move(preload);
  json hidden = json::array();
  for (const auto& h : s.hidden_pids()) {
    hidden.push_back({{"pid", valueOrNull(h.has_pid(), h.pid())},
                      {"comm", valueOrNull(h.has_comm(), h.comm())}});
  }
  doc["hidden_pids"] = std::move(hidden);
  doc["kernel_tainted"] = s.kernel_tainted();
  json failed_collectors = json::array();
  for (const auto& c : s.collectors().failed()) {
    failed_collectors.push_back({{"collector", valueOrNull(c.has_collector(), c.collector())},
                                 {"status", valueOrNull(c.has_status(), c.status())},
                                 {"error", valueOrNull(c.has_error(), c.error())}});
  }
  doc["collectors"] = {{"ok", s.collectors().ok()}, {"failed", std::move(failed_collectors)}};
  doc["unreadable_lines"] = s.unreadable_lines();
  // Lists cut short only, as the document names them.
  const v1::EvidenceSummary::Omitted& o = s.omitted();
  json omitted = json::object();
  for (const auto& [list_name, count] : {std::pair<const char*, uint64_t>{"findings", o.findings()},
                                         {"deleted_executables", o.deleted_executables()},
                                         {"remote_connections", o.remote_connections()},
                                         {"unexpected_listeners", o.unexpected_listeners()},
                                         {"preload", o.preload()},
                                         {"hidden_pids", o.hidden_pids()},
                                         {"recent_logins", o.recent_logins()},
                                         {"collectors", o.collectors()}}) {
    if (count > 0) omitted[list_name] = count;
  }
  if (!omitted.empty()) doc["omitted"] = std::move(omitted);
  return doc;
}

namespace {

// One line for a failed call; the subject (host or evidence id) is named if the controller's
// message does not name it.
std::string withSubject(const std::string& subject, const std::string& message) {
  if (message.find(subject) != std::string::npos) return message;
  return fmt::format("{}: {}", subject, message);
}

// The file a bundle is saved as when no --output is given: "<evidence id>.tar.gz" in the
// current directory; never a name the agent or the controller chose. Empty if the record's id
// is not an evidence id.
std::string defaultOutput(const v1::EvidenceRecord& r) {
  const std::string& id = r.evidence_id();
  if (id.size() != 64 || id.find_first_not_of("0123456789abcdef") != std::string::npos) return "";
  return id + ".tar.gz";
}

// Why `path` cannot be created without --force (it exists, possibly as a symbolic link); empty
// if it can.
std::string existing(const std::string& path) {
  std::error_code ec;
  auto st = fs::symlink_status(path, ec);
  if (ec || !fs::exists(st)) return "";
  return fmt::format("{} exists{} (use --force to overwrite)", path,
                     fs::is_symlink(st) ? " as a symbolic link" : "");
}

struct Download {
  int code = kOk;
  v1::EvidenceRecord record;
  std::string output;
};

// GetEvidence(id) into `output` ("<evidence id>.tar.gz" if empty): written to OUTPUT.part
// (created new, never through a symbolic link), checked (size and SHA-256 against the evidence
// id), then linked to OUTPUT, which fails rather than replace an existing file or follow a
// symbolic link; with `force` renamed over it (a link there is replaced, not followed). Errors
// are one line on io.err.
Download download(OperatorClient& client, const std::string& command, const std::string& id,
                  const std::string& output, bool force, Io& io) {
  Download d;
  auto ctx = client.context(kDownloadTimeout);
  v1::GetEvidenceRequest req;
  req.set_id(id);
  auto reader = client.stub().GetEvidence(ctx.get(), req);
  v1::EvidenceDownload msg;
  bool have_record = false;
  std::FILE* f = nullptr;
  std::string part;
  evidence::Sha256 sha;
  uint64_t bytes = 0;
  std::string fail;  // our side's failure; the call is cancelled
  while (reader->Read(&msg)) {
    if (!have_record) {
      if (!msg.has_record()) {
        fail = "the controller sent data before the evidence record";
        break;
      }
      have_record = true;
      d.record = msg.record();
      d.output = output.empty() ? defaultOutput(d.record) : output;
      if (d.output.empty()) {
        fail = fmt::format(
            "the controller sent a record whose evidence id \"{}\" is not 64 hex "
            "digits",
            d.record.evidence_id().substr(0, 80));
        break;
      }
      if (std::string why = existing(d.output); !force && !why.empty()) {
        fail = why;
        d.code = kUsage;
        break;
      }
      const std::string candidate = d.output + ".part";
      int fd =
          ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) {
        fail = errno == EEXIST
                   ? fmt::format(
                         "{} exists (a download in progress or left over; "
                         "remove it first)",
                         candidate)
                   : fmt::format("cannot create {}: {}", candidate, std::strerror(errno));
        break;
      }
      part = candidate;
      f = ::fdopen(fd, "wb");
      if (f == nullptr) {
        ::close(fd);
        fail = fmt::format("cannot write {}: {}", part, std::strerror(errno));
        break;
      }
      continue;
    }
    if (!msg.has_data()) continue;
    sha.update(msg.data());
    bytes += msg.data().size();
    if (std::fwrite(msg.data().data(), 1, msg.data().size(), f) != msg.data().size()) {
      fail = fmt::format("cannot write {}: {}", part, std::strerror(errno));
      break;
    }
  }
  if (!fail.empty()) ctx->TryCancel();
  grpc::Status st = reader->Finish();
  bool closed_ok = true;
  if (f != nullptr) {
    closed_ok = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
    closed_ok = std::fclose(f) == 0 && closed_ok;
  }
  auto discard = [&] {
    if (!part.empty()) std::remove(part.c_str());
  };
  if (!fail.empty()) {
    discard();
    io.err << fmt::format("bulkhead {}: {}: {}\n", command, id, fail);
    if (d.code == kOk) d.code = kFailed;
    return d;
  }
  if (!st.ok()) {
    discard();
    if (st.error_code() == grpc::StatusCode::NOT_FOUND ||
        st.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      io.err << fmt::format("bulkhead {}: {}\n", command, withSubject(id, st.error_message()));
      d.code = kUsage;
    } else {
      d.code = reportRpcError(command, client.controller(), st, io.err);
    }
    return d;
  }
  if (!have_record) {
    io.err << fmt::format("bulkhead {}: {}: the controller sent no evidence record\n", command, id);
    d.code = kFailed;
    return d;
  }
  std::string got = sha.hexDigest();
  std::string problem;
  if (!closed_ok) {
    problem = fmt::format("cannot write {}: {}", part, std::strerror(errno));
  } else if (bytes != d.record.size()) {
    problem = fmt::format("received {} bytes, the record says {}", bytes, d.record.size());
  } else if (got != d.record.evidence_id()) {
    problem = fmt::format("received bytes hash to {}, not the evidence id", got);
  }
  if (!problem.empty()) {
    discard();
    io.err << fmt::format("bulkhead {}: {}: {}; nothing saved\n", command, d.record.evidence_id(),
                          problem);
    d.code = kFailed;
    return d;
  }
  if (force) {
    std::error_code ec;
    fs::rename(part, d.output, ec);
    if (ec) {
      discard();
      io.err << fmt::format("bulkhead {}: cannot rename {} to {}: {}\n", command, part, d.output,
                            ec.message());
      d.code = kFailed;
    }
    return d;
  }
  // link(2) never replaces OUTPUT and never follows a symbolic link there.
  if (::link(part.c_str(), d.output.c_str()) != 0) {
    const int err = errno;
    discard();
    std::string why = fmt::format("cannot create {}: {}", d.output, std::strerror(err));
    if (err == EEXIST) {
      why = existing(d.output);
      if (why.empty()) why = fmt::format("{} exists (use --force to overwrite)", d.output);
    }
    io.err << fmt::format("bulkhead {}: {}\n", command, why);
    d.code = err == EEXIST ? kUsage : kFailed;
    return d;
  }
  discard();
  return d;
}

void printRecordSummary(std::ostream& out, const v1::EvidenceRecord& r) {
  out << fmt::format("evidence {}\n", r.evidence_id());
  out << fmt::format("  host        {}\n", escapeNonPrintable(r.host_id()));
  if (!r.tenant().empty() && r.tenant() != kDefaultTenant) {
    out << fmt::format("  tenant      {}\n", escapeNonPrintable(r.tenant()));
  }
  out << fmt::format("  capture     {}\n", escapeNonPrintable(r.capture_id()));
  out << fmt::format("  requested   {} by {}: {}\n", utcTime(r.requested_at_unix_ms()),
                     escapeNonPrintable(r.requested_by()), escapeNonPrintable(r.reason()));
  out << fmt::format("  collected   {} (agent clock, offset {} ms)\n",
                     utcTime(r.collected_at_unix_ms()), r.clock_offset_ms());
  out << fmt::format("  size        {} ({} bytes), {} files\n", humanBytes(r.size()), r.size(),
                     r.files());
  out << fmt::format("  signature   {}\n", r.signature_ok() ? "ok" : "NOT VALID");
  if (r.collector_errors_size() == 0) {
    out << "  collectors  all ok\n";
  } else {
    out << fmt::format("  collectors  {} with errors:\n", r.collector_errors_size());
    for (const auto& e : r.collector_errors()) out << "    " << escapeNonPrintable(e) << "\n";
  }
}

int capture(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  CaptureSpec spec;
  std::string output, wait = "300s", collector_timeout, max_binary;
  bool force = false;
  po::options_description opts("capture HOST --reason TEXT [--output FILE]");
  opts.add_options()
      ("host", po::value(&spec.host), "host id (positional)")
      ("reason", po::value(&spec.reason), "why (incident or ticket); required, audited")
      ("output", po::value(&output), "also download the bundle to FILE")
      ("force", po::bool_switch(&force), "overwrite FILE if it exists")
      ("wait", po::value(&wait)->default_value("300s"), "how long to wait for the bundle")
      ("collector-timeout", po::value(&collector_timeout),
       "time limit of each collector (default: each collector's own)")
      ("max-binary-size", po::value(&max_binary),
       "largest executable recovered, BYTES or e.g. 100MiB (default: the agent's)");
  po::positional_options_description pos;
  pos.add("host", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("capture", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto usage = [&](const std::string& line) {
    io.err << "bulkhead capture: " << line << "\n";
    return kUsage;
  };
  if (spec.host.empty()) return usage("HOST: required (the host id to capture)");
  if (spec.reason.empty()) return usage("--reason: required (an incident or ticket id)");
  auto w = parseDuration("--wait", wait);
  if (!w.ok()) return usage(std::string(w.status().message()));
  spec.wait_ms = static_cast<uint32_t>(w->count());
  if (!collector_timeout.empty()) {
    auto d = parseDuration("--collector-timeout", collector_timeout);
    if (!d.ok()) return usage(std::string(d.status().message()));
    spec.collector_time_limit_ms = static_cast<uint32_t>(d->count());
  }
  if (!max_binary.empty()) {
    std::string error;
    if (!parseByteSize("--max-binary-size", max_binary, &spec.max_binary_bytes, &error)) {
      return usage(error);
    }
  }
  if (std::string why = existing(output); !output.empty() && !force && !why.empty()) {
    return usage(fmt::format("--output: {}", why));
  }
  auto client = connectClient("capture", g, io.err);
  if (!client) return kUsage;
  // On a terminal the progress redraws one line; otherwise (logs, scripts) one line per event.
  bool redraw = &io.err == &std::cerr && ::isatty(STDERR_FILENO) == 1;
  bool line_open = false;
  CaptureCallResult r = captureHost(*client, spec, [&](const std::string& line) {
    if (redraw) {
      io.err << "\r\033[K" << escapeNonPrintable(line) << std::flush;
      line_open = true;
    } else {
      io.err << escapeNonPrintable(line) << "\n";
    }
  });
  if (line_open) io.err << "\n";
  if (r.code != kOk) {
    io.err << "bulkhead capture: " << escapeNonPrintable(r.error) << "\n";
    return r.code;
  }
  std::string saved;
  if (!output.empty()) {
    Download d = download(*client, "capture", r.record.evidence_id(), output, force, io);
    if (d.code != kOk) return d.code;
    saved = d.output;
  }
  if (g.json) {
    printJson(io.out, json{{"record", contractJson(r.record)},
                           {"output", saved.empty() ? json(nullptr) : json(saved)}});
  } else {
    printRecordSummary(io.out, r.record);
    if (!saved.empty()) io.out << fmt::format("  saved as    {}\n", saved);
  }
  return kOk;
}

int evidenceList(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string host;
  po::options_description opts("evidence list [--host H]");
  opts.add_options()("host", po::value(&host), "only this host's evidence");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("evidence list", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto client = connectClient("evidence list", g, io.err);
  if (!client) return kUsage;
  // Every page, merged.
  v1::ListEvidenceResponse resp;
  v1::ListEvidenceRequest req;
  req.set_host(host);
  for (;;) {
    v1::ListEvidenceResponse page;
    auto ctx = client->context();
    grpc::Status st = client->stub().ListEvidence(ctx.get(), req, &page);
    if (!st.ok()) return reportRpcError("evidence list", client->controller(), st, io.err);
    for (auto& r : *page.mutable_evidence()) *resp.add_evidence() = std::move(r);
    if (page.next_offset() <= req.offset() || page.evidence_size() == 0) break;
    req.set_offset(page.next_offset());
  }
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "HOST", "COLLECTED", "SIZE", "REQUESTED BY", "REASON", "SIGNATURE"}};
  for (const auto& r : resp.evidence()) {
    rows.push_back({r.evidence_id().substr(0, 12), r.host_id(), utcTime(r.collected_at_unix_ms()),
                    humanBytes(r.size()), r.requested_by(), r.reason(),
                    r.signature_ok() ? "ok" : "NOT VALID"});
  }
  std::vector<std::string> tenants;
  for (const auto& r : resp.evidence()) tenants.push_back(r.tenant());
  addTenantColumn(rows, 2, tenants);
  printTable(io.out, rows);
  return kOk;
}

// Parses `evidence SUB ID` arguments; returns false (exit code in *code) on usage errors.
bool parseIdArgs(const std::string& command, const std::vector<std::string>& args,
                 po::options_description& opts, std::string* id, Io& io, int* code) {
  opts.add_options()("id", po::value(id), "evidence id or a unique prefix (8+ hex digits)");
  po::positional_options_description pos;
  pos.add("id", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs(command, args, opts, pos, vm, io, &help)) {
    *code = help ? kOk : kUsage;
    return false;
  }
  if (id->empty()) {
    io.err << fmt::format("bulkhead {}: ID: required (an evidence id, see bulkhead evidence "
                          "list)\n",
                          command);
    *code = kUsage;
    return false;
  }
  if (!validEvidenceId(*id)) {
    io.err << fmt::format("bulkhead {}: invalid evidence id \"{}\": expected the id or a prefix "
                          "of at least 8 hex digits\n",
                          command, *id);
    *code = kUsage;
    return false;
  }
  return true;
}

// Reports a failed unary evidence call: an unknown id is bad input (2).
int reportEvidenceError(const std::string& command, const std::string& id,
                        const OperatorClient& client, const grpc::Status& st, Io& io) {
  if (st.error_code() == grpc::StatusCode::NOT_FOUND ||
      st.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    io.err << fmt::format("bulkhead {}: {}\n", command, withSubject(id, st.error_message()));
    return kUsage;
  }
  return reportRpcError(command, client.controller(), st, io.err);
}

int evidenceGet(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id, output;
  bool force = false;
  po::options_description opts("evidence get ID [--output FILE]");
  opts.add_options()("output", po::value(&output),
                     "save as FILE (default: ID.tar.gz here, ID in full)")(
      "force", po::bool_switch(&force), "overwrite FILE if it exists");
  int code = kOk;
  if (!parseIdArgs("evidence get", args, opts, &id, io, &code)) return code;
  if (std::string why = existing(output.empty() ? id + ".tar.gz" : output);
      !force && !why.empty() && (!output.empty() || id.size() == 64)) {
    io.err << fmt::format("bulkhead evidence get: {}{}\n", output.empty() ? "" : "--output: ", why);
    return kUsage;
  }
  auto client = connectClient("evidence get", g, io.err);
  if (!client) return kUsage;
  Download d = download(*client, "evidence get", id, output, force, io);
  if (d.code != kOk) return d.code;
  if (g.json) {
    printJson(io.out, json{{"record", contractJson(d.record)}, {"output", d.output}});
  } else {
    io.out << fmt::format("saved {} ({}) as {}: SHA-256 matches the evidence id\n",
                          d.record.evidence_id(), humanBytes(d.record.size()), d.output);
  }
  return kOk;
}

int evidenceVerify(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id;
  po::options_description opts("evidence verify ID");
  int code = kOk;
  if (!parseIdArgs("evidence verify", args, opts, &id, io, &code)) return code;
  auto client = connectClient("evidence verify", g, io.err);
  if (!client) return kUsage;
  v1::VerifyEvidenceRequest req;
  req.set_id(id);
  v1::VerifyEvidenceResponse resp;
  // Verifying re-reads and re-hashes the whole bundle.
  auto ctx = client->context(std::chrono::milliseconds(300'000));
  grpc::Status st = client->stub().VerifyEvidence(ctx.get(), req, &resp);
  if (!st.ok()) return reportEvidenceError("evidence verify", id, *client, st, io);
  if (g.json) {
    printJson(io.out, resp);
  } else if (resp.ok()) {
    io.out << fmt::format("OK {}: {} files, signature by agent {}, custody {} events\n",
                          resp.record().evidence_id(), resp.files_checked(),
                          resp.record().host_id(),
                          resp.record().custody_size() + resp.record().custody_omitted());
  } else {
    for (const auto& p : resp.problems()) {
      io.out << fmt::format("FAIL {}: {}\n", p.file(), p.problem());
    }
    if (resp.problems_size() == 0) {
      io.out << fmt::format("FAIL {}: does not verify\n", resp.record().evidence_id());
    }
  }
  if (!resp.ok()) {
    io.err << fmt::format("bulkhead evidence verify: {}: {} problems; do not trust this bundle\n",
                          resp.record().evidence_id().empty() ? id : resp.record().evidence_id(),
                          resp.problems_size());
    return kFailed;
  }
  return kOk;
}

int evidenceShow(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string id;
  po::options_description opts("evidence show ID");
  int code = kOk;
  if (!parseIdArgs("evidence show", args, opts, &id, io, &code)) return code;
  auto client = connectClient("evidence show", g, io.err);
  if (!client) return kUsage;
  v1::ShowEvidenceRequest req;
  req.set_id(id);
  v1::ShowEvidenceResponse resp;
  auto ctx = client->context(std::chrono::milliseconds(120'000));
  grpc::Status st = client->stub().ShowEvidence(ctx.get(), req, &resp);
  if (!st.ok()) return reportEvidenceError("evidence show", id, *client, st, io);
  if (!resp.has_summary()) {
    // An older controller sends its summary as JSON in a field this CLI no longer reads.
    io.err << fmt::format(
        "bulkhead evidence show: {}: the controller sent no summary (an older "
        "controller? upgrade it)\n",
        resp.record().evidence_id());
    return kFailed;
  }
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  printRecordSummary(io.out, resp.record());
  io.out << "\n" << evidence::renderSummary(summaryDocument(resp.summary()));
  return kOk;
}

int evidenceUnknown(const GlobalOptions&, const std::vector<std::string>& args, Io& io) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    io.out << "usage: bulkhead evidence list [--host H] | get ID [--output FILE] [--force] | "
              "verify ID | show ID\n";
    return kOk;
  }
  if (args.empty()) {
    io.err << "bulkhead evidence: a subcommand is required: list, get, verify or show\n";
  } else {
    io.err << fmt::format("bulkhead evidence: unknown subcommand \"{}\" (list, get, verify or "
                          "show)\n",
                          args[0]);
  }
  return kUsage;
}

}  // namespace

CaptureCallResult captureHost(OperatorClient& client, const CaptureSpec& spec,
                              const std::function<void(const std::string&)>& progress) {
  CaptureCallResult result;
  v1::CaptureRequest req;
  req.set_host(spec.host);
  req.set_reason(spec.reason);
  req.set_wait_ms(spec.wait_ms);
  req.set_collector_time_limit_ms(spec.collector_time_limit_ms);
  req.set_max_binary_bytes(spec.max_binary_bytes);
  auto ctx = client.context(std::chrono::milliseconds(spec.wait_ms) + std::chrono::seconds(30));
  auto reader = client.stub().Capture(ctx.get(), req);
  v1::CaptureEvent event;
  bool done = false;
  // The agent and the controller may both report a step: a line is shown once, and byte
  // counts only forward, every 4 MiB or more and at the end.
  std::set<std::string> shown;
  std::map<v1::CaptureStage, uint64_t> bytes_shown;  // stage -> done
  while (reader->Read(&event)) {
    if (event.has_progress()) {
      const auto& p = event.progress();
      // The closing line says it, with size and signature.
      if (p.capture_stage() == v1::CAPTURE_STAGE_STORED) continue;
      if (isByteStage(p.capture_stage())) {
        auto it = bytes_shown.find(p.capture_stage());
        bool at_end = p.done() == p.total();
        if (it != bytes_shown.end() &&
            (p.done() <= it->second || (p.done() - it->second < (4u << 20) && !at_end))) {
          continue;
        }
        bytes_shown[p.capture_stage()] = p.done();
      }
      std::string line = captureProgressLine(spec.host, p);
      if (progress && shown.insert(line).second) progress(line);
    } else if (event.has_done()) {
      result.record = event.done();
      done = true;
    }
  }
  grpc::Status st = reader->Finish();
  if (st.ok() && done) return result;
  if (st.ok()) {
    result.code = kFailed;
    result.error =
        fmt::format("{}: the controller ended the capture without an evidence record", spec.host);
    return result;
  }
  std::string message = st.error_message();
  switch (st.error_code()) {
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
      result.code = kUsage;
      result.error = withSubject(spec.host, message);
      return result;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      result.code = kFailed;
      result.error = fmt::format("refused by the controller: {}", message);
      return result;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      result.code = kFailed;
      result.error = fmt::format("{}: no evidence within {} s ({}); a bundle that arrives later "
                                 "is stored and listed (bulkhead evidence list --host {})",
                                 spec.host, spec.wait_ms / 1000, message, spec.host);
      return result;
    default:
      result.code = kFailed;
      result.error = withSubject(spec.host, message.empty() ? "capture failed" : message);
      if (message.find("andshake") != std::string::npos ||
          message.find("failed to connect") != std::string::npos) {
        result.error = fmt::format("{}: cannot reach the controller at {}: {}", spec.host,
                                   client.controller(), message);
      }
      return result;
  }
}

void addEvidenceCommands(std::map<std::string, CommandInfo>& table) {
  table["capture"] = {"HOST --reason TEXT [--output FILE]: collect, sign and store evidence",
                      capture};
  table["evidence"] = {"list | get ID | verify ID | show ID: stored evidence bundles",
                       evidenceUnknown};
  table["evidence list"] = {"[--host H]: stored evidence bundles", evidenceList};
  table["evidence get"] = {"ID [--output FILE]: download a bundle (an audited access)",
                           evidenceGet};
  table["evidence verify"] = {"ID: recompute hashes, signature and custody chain", evidenceVerify};
  table["evidence show"] = {"ID: the findings a responder reads first", evidenceShow};
}

}  // namespace bulkhead::cli
