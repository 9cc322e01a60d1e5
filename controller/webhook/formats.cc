#include "controller/webhook/formats.h"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/match.h"
#include "common/format.h"
#include "controller/playbook/engine.h"
#include "evidence/hash.h"

namespace bulkhead::controller::webhook {
namespace {

namespace v1 = bulkhead::v1;
using nlohmann::json;

constexpr int kMaxLabels = 64;

absl::Status invalid(const std::string& field, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("{}: {}", field, what));
}

std::string kindOf(const json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "a boolean";
  if (j.is_number()) return "a number";
  if (j.is_string()) return "a string";
  if (j.is_array()) return "an array";
  return "an object";
}

absl::Status wrongType(const std::string& field, std::string_view want, const json& got) {
  return invalid(field, fmt::format("must be {}, found {}", want, kindOf(got)));
}

// A JSON object's member, or nullptr.
const json* member(const json& object, const std::string& key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

absl::StatusOr<std::string> requiredString(const json& object, const std::string& key,
                                           const std::string& field) {
  const json* v = member(object, key);
  if (v == nullptr || v->is_null()) return invalid(field, "required");
  if (!v->is_string()) return wrongType(field, "a string", *v);
  if (v->get_ref<const std::string&>().empty()) return invalid(field, "must not be empty");
  return v->get<std::string>();
}

absl::StatusOr<std::string> optionalString(const json& object, const std::string& key,
                                           const std::string& field) {
  const json* v = member(object, key);
  if (v == nullptr || v->is_null()) return std::string();
  if (!v->is_string()) return wrongType(field, "a string", *v);
  return v->get<std::string>();
}

// A scalar as label text; nullopt for null, objects and arrays.
std::optional<std::string> scalarText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return v.dump();
  if (v.is_number()) return v.dump();
  return std::nullopt;
}

std::vector<std::string> splitAddresses(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view part = text.substr(start, comma - start);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (!part.empty()) out.emplace_back(part);
    start = comma + 1;
  }
  return out;
}

// "host:9100" -> "host", "[::1]:9100" -> "::1", "host" -> "host".
std::string hostPart(const std::string& instance) {
  if (instance.starts_with('[')) {
    size_t close = instance.find(']');
    return close == std::string::npos ? instance : instance.substr(1, close - 1);
  }
  size_t colon = instance.find(':');
  if (colon != std::string::npos && instance.find(':', colon + 1) == std::string::npos) {
    return instance.substr(0, colon);
  }
  return instance;
}

absl::StatusOr<std::vector<std::string>> stringList(const json& config, const std::string& key) {
  const json* v = member(config, key);
  std::vector<std::string> out;
  if (!v->is_array()) return wrongType(key, "an array of strings", *v);
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string() || (*v)[i].get_ref<const std::string&>().empty()) {
      return invalid(fmt::format("{}[{}]", key, i), "must be a non-empty string");
    }
    out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

// --- paths: a JSON pointer or a dotted path ---

absl::Status checkPath(const std::string& field, const std::string& path) {
  if (path.starts_with('/')) {
    try {
      json::json_pointer p(path);
      (void)p;
    } catch (const json::exception&) {
      return invalid(field, fmt::format("not a JSON pointer: \"{}\"", path));
    }
  } else if (path.empty() || path.find("..") != std::string::npos || path.front() == '.' ||
             path.back() == '.') {
    return invalid(field, fmt::format("not a dotted path: \"{}\"", path));
  }
  return absl::OkStatus();
}

// The value at `path` in `doc`, or nullptr when absent.
const json* at(const json& doc, const std::string& path) {
  if (path.starts_with('/')) {
    try {
      json::json_pointer p(path);
      return doc.contains(p) ? &doc.at(p) : nullptr;
    } catch (const json::exception&) {
      return nullptr;
    }
  }
  const json* cur = &doc;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string::npos) dot = path.size();
    const std::string part = path.substr(start, dot - start);
    if (cur->is_object()) {
      auto it = cur->find(part);
      if (it == cur->end()) return nullptr;
      cur = &*it;
    } else if (cur->is_array()) {
      size_t index = 0;
      auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
      if (ec != std::errc() || end != part.data() + part.size() || index >= cur->size()) {
        return nullptr;
      }
      cur = &(*cur)[index];
    } else {
      return nullptr;
    }
    start = dot + 1;
  }
  return cur;
}

// --- severities ---

v1::Severity alertmanagerSeverity(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (text == "critical" || text == "page" || text == "emergency" || text == "fatal") {
    return v1::SEVERITY_CRITICAL;
  }
  if (text == "high" || text == "error" || text == "major") return v1::SEVERITY_HIGH;
  if (text == "warning" || text == "warn" || text == "medium") return v1::SEVERITY_MEDIUM;
  if (text == "low" || text == "minor" || text == "notice") return v1::SEVERITY_LOW;
  if (text == "info" || text == "informational" || text == "none" || text == "debug") {
    return v1::SEVERITY_INFO;
  }
  return v1::SEVERITY_UNSPECIFIED;  // read as medium
}

absl::StatusOr<v1::Severity> falcoPriority(const std::string& field, std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (text == "emergency" || text == "alert" || text == "critical") return v1::SEVERITY_CRITICAL;
  if (text == "error") return v1::SEVERITY_HIGH;
  if (text == "warning") return v1::SEVERITY_MEDIUM;
  if (text == "notice") return v1::SEVERITY_LOW;
  if (text == "informational" || text == "info" || text == "debug") return v1::SEVERITY_INFO;
  return invalid(field,
                 fmt::format("unknown priority \"{}\" (expected Emergency, Alert, Critical, Error, "
                             "Warning, Notice, Informational or Debug)",
                             text.substr(0, 64)));
}

absl::StatusOr<v1::Severity> genericSeverity(const std::string& field, const json& v) {
  if (v.is_number_integer()) {
    const auto n = v.get<int64_t>();
    if (n < 1 || n > 5) return invalid(field, "a number must be 1 (info) to 5 (critical)");
    return static_cast<v1::Severity>(n);
  }
  if (!v.is_string()) return wrongType(field, "a string or a number", v);
  v1::Severity s = alertmanagerSeverity(v.get<std::string>());
  if (s == v1::SEVERITY_UNSPECIFIED) {
    return invalid(field, fmt::format("unknown severity \"{}\" (expected info, low, medium, "
                                      "warning, high, error or critical)",
                                      v.get<std::string>().substr(0, 64)));
  }
  return s;
}

// The signal's final checks, with the item's field prefix.
absl::Status finish(const std::string& prefix, v1::Signal& signal) {
  if (auto s = validateSignal(signal); !s.ok()) {
    return absl::InvalidArgumentError(prefix.empty() ? std::string(s.message())
                                                     : fmt::format("{}.{}", prefix, s.message()));
  }
  return absl::OkStatus();
}

// --- Alertmanager ---

absl::StatusOr<std::vector<v1::Signal>> decodeAlertmanager(const FormatConfig& config,
                                                           const v1::Signal& base,
                                                           const json& doc) {
  auto version = requiredString(doc, "version", "version");
  if (!version.ok()) return version.status();
  if (*version != "4") {
    return invalid("version",
                   fmt::format("\"{}\" is not supported (expected \"4\")", version->substr(0, 16)));
  }
  const json* alerts = member(doc, "alerts");
  if (alerts == nullptr || alerts->is_null()) return invalid("alerts", "required");
  if (!alerts->is_array()) return wrongType("alerts", "an array", *alerts);
  if (alerts->empty()) return invalid("alerts", "must not be empty");
  if (alerts->size() > kMaxSignalsPerRequest) {
    return invalid("alerts", fmt::format("{} alerts, at most {} a request", alerts->size(),
                                         kMaxSignalsPerRequest));
  }
  std::vector<v1::Signal> out;
  for (size_t i = 0; i < alerts->size(); ++i) {
    const json& alert = (*alerts)[i];
    const std::string prefix = fmt::format("alerts[{}]", i);
    if (!alert.is_object()) return wrongType(prefix, "an object", alert);
    v1::Signal signal = base;
    signal.set_source(v1::SIGNAL_SOURCE_ALERTMANAGER);
    auto status = requiredString(alert, "status", prefix + ".status");
    if (!status.ok()) return status.status();
    if (*status != "firing" && *status != "resolved") {
      return invalid(prefix + ".status", "must be \"firing\" or \"resolved\"");
    }
    signal.set_resolved(*status == "resolved");
    const json* labels = member(alert, "labels");
    if (labels == nullptr || labels->is_null()) return invalid(prefix + ".labels", "required");
    if (!labels->is_object()) return wrongType(prefix + ".labels", "an object", *labels);
    for (const auto& [key, value] : labels->items()) {
      if (!value.is_string()) {
        return wrongType(fmt::format("{}.labels.{}", prefix, key.substr(0, 64)), "a string", value);
      }
    }
    auto rule = requiredString(*labels, "alertname", prefix + ".labels.alertname");
    if (!rule.ok()) return rule.status();
    signal.set_rule(*rule);
    auto fingerprint = requiredString(alert, "fingerprint", prefix + ".fingerprint");
    if (!fingerprint.ok()) return fingerprint.status();
    auto starts_at = optionalString(alert, "startsAt", prefix + ".startsAt");
    if (!starts_at.ok()) return starts_at.status();
    // One firing acts once however often Alertmanager repeats it; its resolution, and a later
    // firing of the same series (a new startsAt), are new signals.
    signal.set_idempotency_key(fmt::format("{}/{}/{}", *fingerprint, *status, *starts_at));
    if (const json* sev = member(*labels, "severity"); sev != nullptr) {
      signal.set_severity(alertmanagerSeverity(sev->get<std::string>()));
    }
    for (const std::string& name : config.host_labels) {
      if (const json* h = member(*labels, name); h != nullptr) {
        signal.set_host(name == "instance" ? hostPart(h->get<std::string>())
                                           : h->get<std::string>());
        break;
      }
    }
    for (const std::string& name : config.address_labels) {
      if (const json* a = member(*labels, name); a != nullptr) {
        for (auto& address : splitAddresses(a->get_ref<const std::string&>())) {
          signal.add_addresses(std::move(address));
        }
        break;
      }
    }
    if (labels->size() > static_cast<size_t>(kMaxLabels)) {
      return invalid(prefix + ".labels",
                     fmt::format("{} labels, at most {}", labels->size(), kMaxLabels));
    }
    for (const auto& [key, value] : labels->items()) {
      (*signal.mutable_labels())[key] = value.get<std::string>();
    }
    if (auto s = finish(prefix, signal); !s.ok()) return s;
    out.push_back(std::move(signal));
  }
  return out;
}

// --- Falcosidekick ---

absl::StatusOr<std::vector<v1::Signal>> decodeFalco(const FormatConfig& config,
                                                    const v1::Signal& base, const json& doc) {
  v1::Signal signal = base;
  signal.set_source(v1::SIGNAL_SOURCE_FALCO);
  auto rule = requiredString(doc, "rule", "rule");
  if (!rule.ok()) return rule.status();
  signal.set_rule(*rule);
  auto priority = requiredString(doc, "priority", "priority");
  if (!priority.ok()) return priority.status();
  auto severity = falcoPriority("priority", *priority);
  if (!severity.ok()) return severity.status();
  signal.set_severity(*severity);
  for (const char* key : {"output", "time", "uuid", "source", "hostname"}) {
    if (auto s = optionalString(doc, key, key); !s.ok()) return s.status();
  }
  const json* fields = member(doc, "output_fields");
  if (fields != nullptr && !fields->is_null() && !fields->is_object()) {
    return wrongType("output_fields", "an object", *fields);
  }
  static const json kNoFields = json::object();
  if (fields == nullptr || fields->is_null()) fields = &kNoFields;
  if (const json* tags = member(doc, "tags"); tags != nullptr && !tags->is_null()) {
    if (!tags->is_array()) return wrongType("tags", "an array", *tags);
  }
  if (auto uuid = optionalString(doc, "uuid", "uuid"); uuid.ok() && !uuid->empty()) {
    signal.set_idempotency_key(*uuid);
  }
  // The host Falco runs on: Falcosidekick's own field, else the event's.
  std::string host = optionalString(doc, "hostname", "hostname").value_or("");
  for (const char* key : {"hostname", "evt.hostname"}) {
    if (!host.empty()) break;
    if (const json* h = member(*fields, key); h != nullptr && h->is_string()) {
      host = h->get<std::string>();
    }
  }
  signal.set_host(host);
  for (const std::string& name : config.address_fields) {
    const json* a = member(*fields, name);
    if (a == nullptr || a->is_null()) continue;
    if (!a->is_string()) return wrongType("output_fields." + name, "a string", *a);
    // Falco prints an absent address as "<NA>".
    if (a->get_ref<const std::string&>().empty() || a->get<std::string>() == "<NA>") continue;
    signal.add_addresses(a->get<std::string>());
    break;
  }
  int count = 0;
  for (const auto& [key, value] : fields->items()) {
    auto text = scalarText(value);
    if (!text || count == kMaxLabels) continue;
    (*signal.mutable_labels())[key] = text->substr(0, 512);
    ++count;
  }
  if (auto s = finish("", signal); !s.ok()) {
    if (signal.addresses_size() > 0 && absl::IsInvalidArgument(s) &&
        absl::StartsWith(s.message(), "address")) {
      return invalid("output_fields", std::string(s.message()));
    }
    return s;
  }
  return std::vector<v1::Signal>{std::move(signal)};
}

// --- generic ---

absl::StatusOr<v1::Signal> decodeGenericItem(const GenericMapping& m, const v1::Signal& base,
                                             const json& item, const std::string& prefix) {
  auto field = [&prefix](const std::string& path) {
    return prefix.empty() ? path : fmt::format("{}: {}", prefix, path);
  };
  v1::Signal signal = base;
  signal.set_source(v1::SIGNAL_SOURCE_WEBHOOK);
  const json* rule = at(item, m.rule);
  if (rule == nullptr || rule->is_null()) return invalid(field(m.rule), "required (rule)");
  auto rule_text = scalarText(*rule);
  if (!rule_text || rule_text->empty())
    return wrongType(field(m.rule), "a non-empty string", *rule);
  signal.set_rule(*rule_text);
  if (!m.severity.empty()) {
    if (const json* v = at(item, m.severity); v != nullptr && !v->is_null()) {
      auto severity = genericSeverity(field(m.severity), *v);
      if (!severity.ok()) return severity.status();
      signal.set_severity(*severity);
    }
  }
  if (!m.addresses.empty()) {
    if (const json* v = at(item, m.addresses); v != nullptr && !v->is_null()) {
      if (v->is_string()) {
        for (auto& a : splitAddresses(v->get_ref<const std::string&>())) {
          signal.add_addresses(std::move(a));
        }
      } else if (v->is_array()) {
        for (const json& a : *v) {
          if (!a.is_string()) return wrongType(field(m.addresses), "an array of strings", *v);
          signal.add_addresses(a.get<std::string>());
        }
      } else {
        return wrongType(field(m.addresses), "a string or an array of strings", *v);
      }
    }
  }
  if (!m.host.empty()) {
    if (const json* v = at(item, m.host); v != nullptr && !v->is_null()) {
      if (!v->is_string()) return wrongType(field(m.host), "a string", *v);
      signal.set_host(v->get<std::string>());
    }
  }
  if (!m.idempotency_key.empty()) {
    if (const json* v = at(item, m.idempotency_key); v != nullptr && !v->is_null()) {
      auto text = scalarText(*v);
      if (!text) return wrongType(field(m.idempotency_key), "a string or a number", *v);
      signal.set_idempotency_key(*text);
    }
  }
  if (!m.resolved.empty()) {
    if (const json* v = at(item, m.resolved); v != nullptr && !v->is_null()) {
      if (v->is_boolean()) {
        signal.set_resolved(v->get<bool>());
      } else if (v->is_string()) {
        signal.set_resolved(v->get<std::string>() == m.resolved_value);
      } else {
        return wrongType(field(m.resolved), "a boolean or a string", *v);
      }
    }
  }
  if (!m.ttl_seconds.empty()) {
    if (const json* v = at(item, m.ttl_seconds); v != nullptr && !v->is_null()) {
      if (!v->is_number_unsigned() || v->get<uint64_t>() > UINT32_MAX) {
        return invalid(field(m.ttl_seconds), "must be a whole number of seconds");
      }
      signal.set_ttl_seconds(v->get<uint32_t>());
    }
  }
  for (const auto& [name, path] : m.labels) {
    const json* v = at(item, path);
    if (v == nullptr || v->is_null()) continue;
    auto text = scalarText(*v);
    if (!text) return wrongType(field(path), "a string, a number or a boolean", *v);
    (*signal.mutable_labels())[name] = *text;
  }
  if (auto s = finish(prefix, signal); !s.ok()) return s;
  return signal;
}

absl::StatusOr<std::vector<v1::Signal>> decodeGeneric(const GenericMapping& m,
                                                      const v1::Signal& base, const json& doc) {
  std::vector<v1::Signal> out;
  if (m.items.empty()) {
    auto signal = decodeGenericItem(m, base, doc, "");
    if (!signal.ok()) return signal.status();
    out.push_back(std::move(*signal));
    return out;
  }
  const json* items = at(doc, m.items);
  if (items == nullptr || items->is_null()) return invalid(m.items, "required (items)");
  if (!items->is_array()) return wrongType(m.items, "an array", *items);
  if (items->empty()) return invalid(m.items, "must not be empty");
  if (items->size() > kMaxSignalsPerRequest) {
    return invalid(m.items, fmt::format("{} items, at most {} a request", items->size(),
                                        kMaxSignalsPerRequest));
  }
  for (size_t i = 0; i < items->size(); ++i) {
    auto signal = decodeGenericItem(m, base, (*items)[i], fmt::format("{}[{}]", m.items, i));
    if (!signal.ok()) return signal.status();
    out.push_back(std::move(*signal));
  }
  return out;
}

absl::StatusOr<GenericMapping> parseMapping(const json& config) {
  GenericMapping m;
  const std::map<std::string, std::string*> paths = {
      {"items", &m.items},       {"rule", &m.rule},
      {"severity", &m.severity}, {"addresses", &m.addresses},
      {"host", &m.host},         {"idempotency_key", &m.idempotency_key},
      {"resolved", &m.resolved}, {"ttl_seconds", &m.ttl_seconds}};
  for (const auto& [key, value] : config.items()) {
    if (auto it = paths.find(key); it != paths.end()) {
      if (!value.is_string()) return wrongType(key, "a string (a path)", value);
      *it->second = value.get<std::string>();
      if (auto s = checkPath(key, *it->second); !s.ok()) return s;
    } else if (key == "resolved_value") {
      if (!value.is_string()) return wrongType(key, "a string", value);
      m.resolved_value = value.get<std::string>();
    } else if (key == "labels") {
      if (!value.is_object()) return wrongType(key, "an object (label name: path)", value);
      if (value.size() > static_cast<size_t>(kMaxLabels)) {
        return invalid(key, fmt::format("at most {} labels", kMaxLabels));
      }
      for (const auto& [name, path] : value.items()) {
        const std::string f = fmt::format("labels.{}", name);
        if (!path.is_string()) return wrongType(f, "a string (a path)", path);
        if (auto s = checkPath(f, path.get<std::string>()); !s.ok()) return s;
        m.labels[name] = path.get<std::string>();
      }
    } else {
      return invalid(key.substr(0, 64),
                     "unknown key (expected items, rule, severity, addresses, host, "
                     "idempotency_key, resolved, resolved_value, ttl_seconds, labels)");
    }
  }
  if (m.rule.empty()) return invalid("rule", "required: the path of the rule's name");
  return m;
}

}  // namespace

absl::StatusOr<Format> parseFormat(std::string_view text) {
  if (text == "alertmanager") return Format::kAlertmanager;
  if (text == "falco") return Format::kFalco;
  if (text == "generic") return Format::kGeneric;
  return invalid("format", fmt::format("unknown format \"{}\" (expected alertmanager, falco or "
                                       "generic)",
                                       text.substr(0, 64)));
}

std::string_view formatName(Format format) {
  switch (format) {
    case Format::kAlertmanager: return "alertmanager";
    case Format::kFalco: return "falco";
    case Format::kGeneric: return "generic";
  }
  return "unknown";
}

absl::StatusOr<FormatConfig> parseFormatConfig(Format format, std::string_view config_json) {
  FormatConfig config;
  config.format = format;
  if (config_json.empty()) {
    if (format == Format::kGeneric) {
      return invalid("mapping", "required for the generic format (a JSON object with \"rule\")");
    }
    return config;
  }
  json doc = json::parse(config_json, nullptr, false);
  if (doc.is_discarded()) return invalid("mapping", "not valid JSON");
  if (!doc.is_object()) return wrongType("mapping", "a JSON object", doc);
  switch (format) {
    case Format::kAlertmanager:
      for (const auto& [key, value] : doc.items()) {
        if (key != "host_labels" && key != "address_labels") {
          return invalid(key.substr(0, 64), "unknown key (expected host_labels, address_labels)");
        }
        auto list = stringList(doc, key);
        if (!list.ok()) return list.status();
        (key == "host_labels" ? config.host_labels : config.address_labels) = std::move(*list);
      }
      break;
    case Format::kFalco:
      for (const auto& [key, value] : doc.items()) {
        if (key != "address_fields") {
          return invalid(key.substr(0, 64), "unknown key (expected address_fields)");
        }
        auto list = stringList(doc, key);
        if (!list.ok()) return list.status();
        config.address_fields = std::move(*list);
      }
      break;
    case Format::kGeneric: {
      auto mapping = parseMapping(doc);
      if (!mapping.ok()) return mapping.status();
      config.mapping = std::move(*mapping);
      break;
    }
  }
  return config;
}

absl::StatusOr<std::vector<v1::Signal>> decode(const FormatConfig& config,
                                               const std::string& integration,
                                               std::string_view body) {
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded()) return invalid("body", "not valid JSON");
  if (!doc.is_object()) return wrongType("body", "a JSON object", doc);
  v1::Signal base;
  base.set_integration(integration);
  base.set_payload_sha256(evidence::sha256Hex(body));
  switch (config.format) {
    case Format::kAlertmanager: return decodeAlertmanager(config, base, doc);
    case Format::kFalco: return decodeFalco(config, base, doc);
    case Format::kGeneric: return decodeGeneric(config.mapping, base, doc);
  }
  return absl::InternalError("unknown webhook format");
}

}  // namespace bulkhead::controller::webhook
