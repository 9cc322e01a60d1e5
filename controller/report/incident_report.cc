#include "controller/report/incident_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <utility>

#include "common/format.h"
#include "common/lines.h"

namespace bulkhead::controller {
namespace {

using nlohmann::json;

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The parts of `text` between occurrences of `sep`.
std::vector<std::string_view> splitOn(std::string_view text, std::string_view sep) {
  std::vector<std::string_view> out;
  for (size_t at = text.find(sep); at != std::string_view::npos; at = text.find(sep)) {
    out.push_back(text.substr(0, at));
    text.remove_prefix(at + sep.size());
  }
  out.push_back(text);
  return out;
}

std::string severityName(bulkhead::v1::IncidentSeverity s) {
  switch (s) {
    case bulkhead::v1::INCIDENT_SEVERITY_LOW: return "low";
    case bulkhead::v1::INCIDENT_SEVERITY_MEDIUM: return "medium";
    case bulkhead::v1::INCIDENT_SEVERITY_HIGH: return "high";
    case bulkhead::v1::INCIDENT_SEVERITY_CRITICAL: return "critical";
    default: return "unspecified";
  }
}

json timeOrNull(int64_t unix_ms) {
  return unix_ms > 0 ? json(utcTimeText(unix_ms)) : json(nullptr);
}

// "N enforced: h1, h2 (why, more)": the names outside parentheses after "N state: ".
std::vector<std::string> namesOf(std::string_view list) {
  std::vector<std::string> out;
  std::string current;
  int depth = 0;
  auto flush = [&] {
    std::string_view name = trimmed(current);
    if (!name.empty()) out.emplace_back(name);
    current.clear();
  };
  for (char c : list) {
    if (c == '(') ++depth;
    if (depth == 0 && c == ',') {
      flush();
      continue;
    }
    if (depth == 0 && c != ')') current += c;
    if (c == ')' && depth > 0) --depth;
  }
  flush();
  return out;
}

// The text of `detail` after "PREFIX N: " up to the next ';' (or the end).
std::string_view listAfter(std::string_view detail, std::string_view prefix) {
  const size_t at = detail.find(prefix);
  if (at == std::string_view::npos) return {};
  std::string_view rest = detail.substr(at + prefix.size());
  const size_t colon = rest.find(": ");
  const size_t semi = rest.find(';');
  if (colon == std::string_view::npos || (semi != std::string_view::npos && semi < colon)) {
    return {};
  }
  rest = rest.substr(colon + 2);
  return rest.substr(0, rest.find(';'));
}

void addOnce(std::vector<std::string>& list, std::string value) {
  if (!value.empty() && std::find(list.begin(), list.end(), value) == list.end()) {
    list.push_back(std::move(value));
  }
}

std::string htmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// Markdown table cells: '|' and newlines would break the row.
std::string mdCell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string text(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

// The report's sections, in order, as (title, rows of cells) for the table renderers.
struct Table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  // Columns never broken across lines (times, names, hashes), so each reads and copies whole.
  std::vector<size_t> whole = {};
};

std::vector<std::pair<std::string, std::string>> summaryFields(const json& doc) {
  const json& inc = doc["incident"];
  const json& clock = doc["regulator_clock"];
  return {
      {"Incident", text(inc["id"])},
      {"Tenant", text(inc["tenant"])},
      {"Title", text(inc["title"])},
      {"Severity", text(inc["severity"])},
      {"Status", text(inc["status"])},
      {"Opened", fmt::format("{} by {}", text(inc["opened_at"]), text(inc["opened_by"]))},
      {"Detected", text(inc["detected_at"])},
      {"Closed", inc["closed_at"].is_null()
                     ? std::string("not yet")
                     : fmt::format("{} by {}", text(inc["closed_at"]), text(inc["closed_by"]))},
      {"Summary", text(inc["summary"])},
      {"Regulator clock", fmt::format("{} h since detection; 72-hour mark {}{}",
                                      text(clock["hours_since_detection"]), text(clock["deadline"]),
                                      clock["deadline_passed"].get<bool>() ? " (passed)" : "")},
      {"Generated",
       fmt::format("{} by controller {}", text(doc["generated_at"]), text(doc["controller"]))}};
}

std::vector<Table> tables(const json& doc) {
  std::vector<Table> out;
  Table ind{"Indicators", {"kind", "value"}, {}, {1}};
  for (const auto& v : doc["indicators"]["blocked"]) ind.rows.push_back({"blocked", text(v)});
  for (const auto& v : doc["indicators"]["binaries_sha256"]) {
    ind.rows.push_back({"recovered binary (SHA-256)", text(v)});
  }
  for (const auto& v : doc["indicators"]["accounts"]) {
    ind.rows.push_back({"account whose sessions were killed", text(v)});
  }
  out.push_back(std::move(ind));

  Table hosts{"Affected hosts and containment",
              {"host", "isolated", "released", "isolated for", "flows cut"},
              {},
              {1, 2}};
  for (const auto& h : doc["hosts"]) {
    hosts.rows.push_back(
        {text(h["host"]), text(h["isolated_at"]),
         h["released_at"].is_null() ? "not released in this incident" : text(h["released_at"]),
         h["isolated_seconds"].is_null()
             ? ""
             : fmt::format("{} s", h["isolated_seconds"].get<int64_t>()),
         text(h["flows_cut"])});
  }
  out.push_back(std::move(hosts));

  Table timeline{"Timeline (every audited action of the incident, UTC)",
                 {"row", "time", "actor", "action", "target", "reason", "outcome", "detail"},
                 {},
                 {1, 2, 3}};
  for (const auto& r : doc["timeline"]) {
    timeline.rows.push_back({text(r["id"]), text(r["at"]), text(r["actor"]), text(r["action"]),
                             text(r["target"]), text(r["reason"]), text(r["outcome"]),
                             text(r["detail"])});
  }
  out.push_back(std::move(timeline));

  Table ev{"Evidence (SHA-256 is the evidence id)",
           {"evidence SHA-256", "host", "requested by", "reason", "collected", "received", "bytes",
            "signature"},
           {},
           {0, 4, 5}};
  Table custody{"Chain of custody",
                {"evidence", "time", "actor", "event", "detail", "hash"},
                {},
                {0, 1, 2, 3, 5}};
  for (const auto& e : doc["evidence"]) {
    ev.rows.push_back({text(e["sha256"]), text(e["host"]), text(e["requested_by"]),
                       text(e["reason"]), text(e["collected_at"]), text(e["received_at"]),
                       text(e["size"]),
                       std::string(e["signature_ok"].get<bool>() ? "valid" : "NOT VALID") +
                           (e["problem"].is_null() ? "" : "; " + text(e["problem"]))});
    for (const auto& c : e["custody"]) {
      custody.rows.push_back({text(e["sha256"]).substr(0, 16), text(c["at"]), text(c["actor"]),
                              text(c["action"]), text(c["detail"]), text(c["hash"])});
    }
  }
  out.push_back(std::move(ev));
  out.push_back(std::move(custody));

  Table actors{"Who acted", {"actor", "audited actions"}, {}};
  for (const auto& a : doc["actors"]) actors.rows.push_back({text(a["name"]), text(a["actions"])});
  out.push_back(std::move(actors));

  Table notes{"Notes and next steps", {"time", "by", "note"}, {}};
  for (const auto& n : doc["notes"]) {
    notes.rows.push_back({text(n["at"]), text(n["by"]), text(n["text"])});
  }
  out.push_back(std::move(notes));

  for (const auto& [key, title] :
       {std::pair{"nist_sp_800_61", "NIST SP 800-61 incident record"},
        std::pair{"gdpr_article_33_3", "GDPR article 33(3) notification"}}) {
    Table t{title, {"field", "value"}, {}};
    for (const auto& f : doc[key]) t.rows.push_back({text(f["field"]), text(f["value"])});
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

absl::StatusOr<ReportFormat> parseReportFormat(std::string_view t) {
  if (t.empty()) return absl::InvalidArgumentError("format: required (html, pdf, json or md)");
  if (t == "json") return ReportFormat::kJson;
  if (t == "md") return ReportFormat::kMarkdown;
  if (t == "html") return ReportFormat::kHtml;
  if (t == "pdf") return ReportFormat::kPdf;
  return absl::InvalidArgumentError(
      fmt::format("format: \"{}\" is not one of html, pdf, json, md", t));
}

std::string reportFormatName(ReportFormat format) {
  switch (format) {
    case ReportFormat::kJson: return "json";
    case ReportFormat::kMarkdown: return "md";
    case ReportFormat::kHtml: return "html";
    case ReportFormat::kPdf: return "pdf";
  }
  return "json";
}

std::vector<std::string> hostsInStates(std::string_view detail,
                                       const std::vector<std::string_view>& states) {
  std::vector<std::string> out;
  for (std::string_view part : splitOn(detail, "; ")) {
    // "N state: names"
    const size_t space = part.find(' ');
    const size_t colon = part.find(": ");
    if (space == std::string_view::npos || colon == std::string_view::npos || colon < space) {
      continue;
    }
    const std::string_view state = part.substr(space + 1, colon - space - 1);
    if (std::find(states.begin(), states.end(), state) == states.end()) continue;
    for (std::string& name : namesOf(part.substr(colon + 2))) addOnce(out, std::move(name));
  }
  return out;
}

std::vector<HostContainment> containmentOf(const std::vector<AuditEntry>& records) {
  std::vector<HostContainment> out;
  auto of = [&out](const std::string& host) -> HostContainment& {
    for (HostContainment& h : out) {
      if (h.host == host) return h;
    }
    return out.emplace_back(HostContainment{.host = host});
  };
  for (const AuditEntry& r : records) {
    const bool isolate = r.action == "isolate.result";
    if (!isolate && r.action != "release.result") continue;
    for (const std::string& host : hostsInStates(r.detail, {"enforced", "pending"})) {
      HostContainment& h = of(host);
      if (isolate && (h.isolated_at_unix_ms == 0 || h.released_at_unix_ms != 0)) {
        h.isolated_at_unix_ms = r.at_unix_ms;
        h.released_at_unix_ms = 0;
      } else if (!isolate && h.isolated_at_unix_ms != 0 && h.released_at_unix_ms == 0) {
        h.released_at_unix_ms = r.at_unix_ms;
      }
    }
    if (!isolate) continue;
    // "h1 (12 flows cut)": the count before the marker, after the host's name and " (".
    static constexpr std::string_view kMarker = " flows cut)";
    for (size_t at = r.detail.find(kMarker); at != std::string::npos;
         at = r.detail.find(kMarker, at + 1)) {
      const size_t open = r.detail.rfind(" (", at);
      if (open == std::string::npos) continue;
      uint64_t n = 0;
      const char* first = r.detail.data() + open + 2;
      const auto [end, ec] = std::from_chars(first, r.detail.data() + at, n);
      if (ec != std::errc() || end != r.detail.data() + at) continue;
      const size_t name_start = r.detail.find_last_of(":,", open);
      if (name_start == std::string::npos) continue;
      const std::string name(
          trimmed(std::string_view(r.detail).substr(name_start + 1, open - name_start - 1)));
      if (!name.empty()) of(name).flows_cut += n;
    }
  }
  // A host only ever released in this incident was not isolated in it.
  std::erase_if(out, [](const HostContainment& h) { return h.isolated_at_unix_ms == 0; });
  return out;
}

json reportDocument(const ReportInput& in) {
  const bulkhead::v1::Incident& inc = in.incident;
  const int64_t detected =
      inc.detected_unix_ms() > 0 ? inc.detected_unix_ms() : inc.opened_unix_ms();
  const int64_t deadline = detected + in.regulator_deadline_ms;
  const int64_t clock_end =
      inc.closed_unix_ms() > 0 ? inc.closed_unix_ms() : in.generated_at_unix_ms;
  json doc = {
      {"format", kReportFormatName},
      {"generated_at", utcTimeText(in.generated_at_unix_ms)},
      {"generated_at_unix_ms", in.generated_at_unix_ms},
      {"controller", in.controller},
      {"incident",
       {{"id", inc.incident_id()},
        {"tenant", inc.tenant()},
        {"title", inc.title()},
        {"severity", severityName(inc.severity())},
        {"status", inc.state() == bulkhead::v1::INCIDENT_STATE_CLOSED ? "closed" : "open"},
        {"opened_by", inc.opened_by()},
        {"opened_at", timeOrNull(inc.opened_unix_ms())},
        {"detected_at", timeOrNull(detected)},
        {"closed_by", inc.closed_by().empty() ? json(nullptr) : json(inc.closed_by())},
        {"closed_at", timeOrNull(inc.closed_unix_ms())},
        {"summary", inc.summary().empty() ? json(kToComplete) : json(inc.summary())}}},
      {"regulator_clock",
       {{"detected_at", timeOrNull(detected)},
        {"deadline", timeOrNull(deadline)},
        {"hours_since_detection", (in.generated_at_unix_ms - detected) / 3600000},
        {"deadline_passed", in.generated_at_unix_ms > deadline}}},
  };

  std::vector<std::string> blocked, accounts, binaries;
  std::map<std::string, int64_t> actions_by_actor;
  std::vector<std::string> actor_order;
  json timeline = json::array();
  json notes = json::array();
  for (const AuditEntry& r : in.records) {
    timeline.push_back({{"id", r.id},
                        {"at", utcTimeText(r.at_unix_ms)},
                        {"at_unix_ms", r.at_unix_ms},
                        {"actor", r.operator_name},
                        {"action", r.action},
                        {"target", r.target},
                        {"reason", r.reason},
                        {"outcome", r.outcome},
                        {"detail", r.detail},
                        {"hash", r.hash}});
    if (!actions_by_actor.contains(r.operator_name)) actor_order.push_back(r.operator_name);
    ++actions_by_actor[r.operator_name];
    if (r.action == "incident-note") {
      notes.push_back({{"at", utcTimeText(r.at_unix_ms)},
                       {"by", r.operator_name},
                       {"text", r.detail.empty() ? r.reason : r.detail}});
    }
    const bool good = r.outcome == "ok" || r.outcome == "accepted";
    if (r.action == "block" && good && r.detail.starts_with("block ")) {
      std::string_view match = std::string_view(r.detail).substr(6);
      addOnce(blocked, std::string(match.substr(0, match.find(" ("))));
    }
    if (r.action == "kill-sessions.result") {
      for (const std::string& entry : namesOf(listAfter(r.detail, "sessions "))) {
        // "ID USER from REMOTE"
        const std::vector<std::string_view> words = splitSpaces(entry);
        if (words.size() >= 2) addOnce(accounts, std::string(words[1]));
      }
    }
  }
  json evidence = json::array();
  for (const ReportEvidence& e : in.evidence) {
    json custody = json::array();
    for (const CustodyEntry& c : e.custody) {
      custody.push_back({{"at", utcTimeText(c.at_unix_ms)},
                         {"actor", c.actor},
                         {"action", c.action},
                         {"detail", c.detail},
                         {"hash", c.hash}});
    }
    for (const std::string& b : e.binaries) addOnce(binaries, b);
    evidence.push_back({{"sha256", e.row.id},
                        {"capture_id", e.row.capture_id},
                        {"host", e.row.host_id},
                        {"requested_by", e.row.requested_by},
                        {"reason", e.row.reason},
                        {"requested_at", timeOrNull(e.row.requested_at_unix_ms)},
                        {"collected_at", timeOrNull(e.row.collected_at_unix_ms)},
                        {"received_at", timeOrNull(e.row.received_at_unix_ms)},
                        {"size", e.row.size},
                        {"manifest_sha256", e.row.manifest_sha256},
                        {"signature_ok", e.row.signature_ok},
                        {"binaries_sha256", e.binaries},
                        {"stored_at", "controller evidence store"},
                        {"problem", e.problem.empty() ? json(nullptr) : json(e.problem)},
                        {"custody", custody}});
  }
  json hosts = json::array();
  for (const HostContainment& h : containmentOf(in.records)) {
    hosts.push_back({{"host", h.host},
                     {"isolated_at", timeOrNull(h.isolated_at_unix_ms)},
                     {"released_at", timeOrNull(h.released_at_unix_ms)},
                     {"still_isolated", h.released_at_unix_ms == 0},
                     {"isolated_seconds", h.isolatedMs(clock_end) / 1000},
                     {"flows_cut", h.flows_cut}});
  }
  json actors = json::array();
  for (const std::string& a : actor_order) {
    actors.push_back({{"name", a}, {"actions", actions_by_actor[a]}});
  }
  doc["indicators"] = {{"blocked", blocked}, {"binaries_sha256", binaries}, {"accounts", accounts}};
  doc["hosts"] = hosts;
  doc["timeline"] = timeline;
  doc["evidence"] = evidence;
  doc["actors"] = actors;
  doc["notes"] = notes;

  auto field = [](std::string name, json value) {
    return json{{"field", std::move(name)}, {"value", std::move(value)}};
  };
  const std::string status = doc["incident"]["status"];
  doc["nist_sp_800_61"] = json::array({
      field("status", status),
      field("summary", doc["incident"]["summary"]),
      field("indicators", fmt::format("{} blocked, {} binaries, {} accounts (Indicators)",
                                      blocked.size(), binaries.size(), accounts.size())),
      field("related incidents", kToComplete),
      field("actions taken by every handler", fmt::format("{} audited actions by {} actors "
                                                          "(Timeline, Who acted)",
                                                          in.records.size(), actors.size())),
      field("chain of custody", fmt::format("{} bundles with hash-chained custody events "
                                            "(Evidence, Chain of custody)",
                                            in.evidence.size())),
      field("impact assessment", kToComplete),
      field("contact information", kToComplete),
      field("evidence list", fmt::format("{} bundles (Evidence)", in.evidence.size())),
      field("comments", fmt::format("{} notes (Notes)", notes.size())),
      field("next steps", kToComplete),
      field("containment duration", fmt::format("{} hosts (Affected hosts)", hosts.size())),
  });
  doc["gdpr_article_33_3"] = json::array({
      field("(a) nature of the breach", inc.title()),
      field("(a) categories and approximate number of data subjects", kToComplete),
      field("(a) categories and approximate number of records", kToComplete),
      field("(b) data protection officer or other contact", kToComplete),
      field("(c) likely consequences", kToComplete),
      field("(d) measures taken", fmt::format("{} containment actions audited, {} hosts "
                                              "isolated, {} addresses blocked (Timeline)",
                                              in.records.size(), hosts.size(), blocked.size())),
      field("(d) measures proposed", kToComplete),
      field(
          "awareness and the 72-hour mark",
          fmt::format("detected {}; report due {}", utcTimeText(detected), utcTimeText(deadline))),
  });
  return doc;
}

std::string renderJsonReport(const json& doc) { return doc.dump(2) + "\n"; }

std::string renderMarkdownReport(const json& doc) {
  std::string out = fmt::format("# Incident report {}: {}\n\n", text(doc["incident"]["id"]),
                                mdCell(text(doc["incident"]["title"])));
  out += "| | |\n|---|---|\n";
  for (const auto& [k, v] : summaryFields(doc)) out += fmt::format("| {} | {} |\n", k, mdCell(v));
  for (const Table& t : tables(doc)) {
    out += fmt::format("\n## {}\n\n", t.title);
    if (t.rows.empty()) {
      out += "(none)\n";
      continue;
    }
    out += "|";
    for (const auto& h : t.header) out += fmt::format(" {} |", h);
    out += "\n|";
    for (size_t i = 0; i < t.header.size(); ++i) out += "---|";
    out += "\n";
    for (const auto& row : t.rows) {
      out += "|";
      for (const auto& c : row) out += fmt::format(" {} |", mdCell(c));
      out += "\n";
    }
  }
  return out;
}

std::string renderHtmlReport(const json& doc) {
  std::string out = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "style-src 'unsafe-inline'\">\n"
      "<title>Incident report {}</title>\n<style>\n"
      "@page {{ size: A4 landscape; margin: 12mm; }}\n"
      "body {{ font-family: sans-serif; font-size: 10pt; color: #111; margin: 0 auto; "
      "max-width: 1100px; }}\n"
      "h1 {{ font-size: 16pt; }} h2 {{ font-size: 12pt; margin-top: 18pt; "
      "border-bottom: 1px solid #888; }}\n"
      "table {{ border-collapse: collapse; width: 100%; }}\n"
      "th, td {{ border: 1px solid #bbb; padding: 2pt 4pt; text-align: left; "
      "vertical-align: top; overflow-wrap: anywhere; }}\n"
      "th {{ background: #eee; overflow-wrap: normal; }} tr {{ page-break-inside: avoid; }}\n"
      ".summary th {{ width: 22%; }} .todo {{ color: #a00; font-style: italic; }}\n"
      "td.whole {{ white-space: nowrap; font-family: monospace; font-size: 8pt; }}\n"
      "</style></head><body>\n<h1>Incident report {}: {}</h1>\n<table class=\"summary\">\n",
      htmlEscape(text(doc["incident"]["id"])), htmlEscape(text(doc["incident"]["id"])),
      htmlEscape(text(doc["incident"]["title"])));
  auto cell = [](const std::string& v) {
    return v == kToComplete ? fmt::format("<span class=\"todo\">{}</span>", kToComplete)
                            : htmlEscape(v);
  };
  for (const auto& [k, v] : summaryFields(doc)) {
    out += fmt::format("<tr><th>{}</th><td>{}</td></tr>\n", htmlEscape(k), cell(v));
  }
  out += "</table>\n";
  for (const Table& t : tables(doc)) {
    out += fmt::format("<h2>{}</h2>\n", htmlEscape(t.title));
    if (t.rows.empty()) {
      out += "<p>(none)</p>\n";
      continue;
    }
    out += "<table><tr>";
    for (const auto& h : t.header) out += fmt::format("<th>{}</th>", htmlEscape(h));
    out += "</tr>\n";
    for (const auto& row : t.rows) {
      out += "<tr>";
      for (size_t i = 0; i < row.size(); ++i) {
        const bool whole = std::find(t.whole.begin(), t.whole.end(), i) != t.whole.end();
        out += fmt::format("<td{}>{}</td>", whole ? " class=\"whole\"" : "", cell(row[i]));
      }
      out += "</tr>\n";
    }
    out += "</table>\n";
  }
  out += "</body></html>\n";
  return out;
}

}  // namespace bulkhead::controller
