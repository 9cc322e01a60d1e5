#include "agent/core/signal.h"

#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/json.h"
#include "common/parse.h"

namespace bulkhead::agent {
namespace v1 = bulkhead::v1;
namespace {

constexpr std::array<std::pair<std::string_view, v1::SignalSource>, 4> kLocalSources = {{
    {"fail2ban", v1::SIGNAL_SOURCE_FAIL2BAN},
    {"wazuh", v1::SIGNAL_SOURCE_WAZUH},
    {"sshguard", v1::SIGNAL_SOURCE_SSHGUARD},
    {"cli", v1::SIGNAL_SOURCE_CLI},
}};

constexpr std::array<std::pair<std::string_view, v1::Severity>, 5> kSeverities = {{
    {"info", v1::SEVERITY_INFO},
    {"low", v1::SEVERITY_LOW},
    {"medium", v1::SEVERITY_MEDIUM},
    {"high", v1::SEVERITY_HIGH},
    {"critical", v1::SEVERITY_CRITICAL},
}};

constexpr std::array<std::pair<std::string_view, SignalResult>, 4> kResults = {{
    {"recorded", SignalResult::kRecorded},
    {"refused", SignalResult::kRefused},
    {"invalid", SignalResult::kInvalid},
    {"not-delivered", SignalResult::kNotDelivered},
}};

constexpr std::array<std::pair<std::string_view, v1::SignalDisposition>, 6> kDispositions = {{
    {"acted", v1::SIGNAL_DISPOSITION_ACTED},
    {"no-match", v1::SIGNAL_DISPOSITION_NO_MATCH},
    {"duplicate", v1::SIGNAL_DISPOSITION_DUPLICATE},
    {"suppressed", v1::SIGNAL_DISPOSITION_SUPPRESSED},
    {"simulated", v1::SIGNAL_DISPOSITION_SIMULATED},
    {"awaiting-approval", v1::SIGNAL_DISPOSITION_AWAITING_APPROVAL},
}};

absl::Status invalid(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("{}: {}", field, why));
}

std::string_view stripNewline(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  return line;
}

}  // namespace

absl::StatusOr<v1::SignalSource> parseLocalSignalSource(std::string_view field,
                                                        std::string_view text) {
  for (const auto& [name, source] : kLocalSources) {
    if (name == text) return source;
  }
  return invalid(field, fmt::format("unknown source \"{}\" (expected fail2ban, wazuh, sshguard or "
                                    "cli)",
                                    text));
}

std::string_view signalSourceName(v1::SignalSource source) {
  for (const auto& [name, s] : kLocalSources) {
    if (s == source) return name;
  }
  switch (source) {
    case v1::SIGNAL_SOURCE_CROWDSEC: return "crowdsec";
    case v1::SIGNAL_SOURCE_ALERTMANAGER: return "alertmanager";
    case v1::SIGNAL_SOURCE_FALCO: return "falco";
    case v1::SIGNAL_SOURCE_WEBHOOK: return "webhook";
    default: return "unspecified";
  }
}

absl::StatusOr<v1::Severity> parseSeverity(std::string_view field, std::string_view text) {
  for (const auto& [name, severity] : kSeverities) {
    if (name == text) return severity;
  }
  return invalid(field, fmt::format("unknown severity \"{}\" (expected info, low, medium, high "
                                    "or critical)",
                                    text));
}

std::string_view severityName(v1::Severity severity) {
  for (const auto& [name, s] : kSeverities) {
    if (s == severity) return name;
  }
  return "unspecified";
}

std::string_view dispositionName(v1::SignalDisposition disposition) {
  for (const auto& [name, d] : kDispositions) {
    if (d == disposition) return name;
  }
  return "unspecified";
}

std::string_view signalResultName(SignalResult result) {
  for (const auto& [name, r] : kResults) {
    if (r == result) return name;
  }
  return "not-delivered";
}

absl::Status checkLocalSignal(v1::Signal& signal) {
  bool local = std::any_of(kLocalSources.begin(), kLocalSources.end(),
                           [&](const auto& s) { return s.second == signal.source(); });
  if (!local) {
    return invalid("signal.source",
                   fmt::format("{} is not a source on this host (expected fail2ban, wazuh, "
                               "sshguard or cli)",
                               signalSourceName(signal.source())));
  }
  if (!signal.integration().empty()) {
    return invalid("signal.integration", "only webhook signals name an integration");
  }
  if (!signal.host().empty()) {
    return invalid("signal.host",
                   "must be empty: the controller takes this host from its certificate");
  }
  if (signal.rule().empty()) return invalid("signal.rule", "required");
  if (signal.rule().size() > kMaxSignalRuleBytes) {
    return invalid("signal.rule",
                   fmt::format("{} bytes, at most {}", signal.rule().size(), kMaxSignalRuleBytes));
  }
  if (signal.addresses_size() > kMaxSignalAddresses) {
    return invalid("signal.addresses", fmt::format("{} addresses, at most {}",
                                                   signal.addresses_size(), kMaxSignalAddresses));
  }
  for (int i = 0; i < signal.addresses_size(); ++i) {
    auto cidr = parseCidr(fmt::format("signal.addresses[{}]", i), signal.addresses(i));
    if (!cidr.ok()) return cidr.status();
    signal.set_addresses(i, cidr->toString());
  }
  if (signal.labels_size() > kMaxSignalLabels) {
    return invalid("signal.labels",
                   fmt::format("{} labels, at most {}", signal.labels_size(), kMaxSignalLabels));
  }
  for (const auto& [key, value] : signal.labels()) {
    if (key.empty() || key.size() > kMaxSignalLabelKeyBytes) {
      return invalid("signal.labels",
                     fmt::format("key \"{}\": 1 to {} bytes", key, kMaxSignalLabelKeyBytes));
    }
    if (value.size() > kMaxSignalLabelValueBytes) {
      return invalid(fmt::format("signal.labels[{}]", key),
                     fmt::format("{} bytes, at most {}", value.size(), kMaxSignalLabelValueBytes));
    }
  }
  if (signal.idempotency_key().size() > kMaxIdempotencyKeyBytes) {
    return invalid("signal.idempotency_key",
                   fmt::format("{} bytes, at most {}", signal.idempotency_key().size(),
                               kMaxIdempotencyKeyBytes));
  }
  if (signal.severity() < v1::SEVERITY_UNSPECIFIED || signal.severity() > v1::SEVERITY_CRITICAL) {
    return invalid("signal.severity", "unknown value");
  }
  return absl::OkStatus();
}

std::string sha256Hex(std::string_view data) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest.data());
  std::string out;
  out.reserve(digest.size() * 2);
  for (unsigned char c : digest) out += fmt::format("{:02x}", c);
  return out;
}

std::string defaultIdempotencyKey(const v1::Signal& signal, int64_t unix_minute) {
  std::vector<std::string> addresses(signal.addresses().begin(), signal.addresses().end());
  std::sort(addresses.begin(), addresses.end());
  std::string material = fmt::format("{}\n{}\n", signalSourceName(signal.source()), signal.rule());
  for (const auto& a : addresses) material += a + ",";
  material += fmt::format("\n{}\n{}", signal.resolved() ? "end" : "start", unix_minute);
  return fmt::format("agent:{}:{}:{}", signalSourceName(signal.source()),
                     signal.resolved() ? "end" : "start", sha256Hex(material).substr(0, 32));
}

std::string encodeSignalRequest(const SignalRequest& request) {
  const v1::Signal& s = request.signal;
  nlohmann::json sig = {
      {"source", std::string(signalSourceName(s.source()))},
      {"rule", s.rule()},
      {"severity", std::string(severityName(s.severity()))},
      {"addresses", std::vector<std::string>(s.addresses().begin(), s.addresses().end())},
      {"ttl_seconds", s.ttl_seconds()},
      {"idempotency_key", s.idempotency_key()},
      {"resolved", s.resolved()},
      {"payload_sha256", s.payload_sha256()},
      {"labels", nlohmann::json::object()},
  };
  for (const auto& [k, v] : s.labels()) sig["labels"][k] = v;
  nlohmann::json doc = {{"timeout_ms", request.timeout.count()}, {"signal", std::move(sig)}};
  return dumpJson(doc) + "\n";
}

absl::StatusOr<SignalRequest> decodeSignalRequest(std::string_view line) {
  line = stripNewline(line);
  if (line.size() >= kMaxSignalRequestBytes) {
    return invalid("request", fmt::format("larger than {} bytes", kMaxSignalRequestBytes));
  }
  auto doc = parseForeignJson(line, 8);
  if (!doc || !doc->is_object()) return invalid("request", "not a JSON object");
  SignalRequest r;
  if (doc->contains("timeout_ms")) {
    auto ms = jsonUint(*doc, "timeout_ms");
    if (!ms) return invalid("timeout_ms", "expected a non-negative integer");
    if (*ms > static_cast<uint64_t>(kMaxSignalTimeout.count())) {
      return invalid("timeout_ms",
                     fmt::format("{} ms, at most {} ms", *ms, kMaxSignalTimeout.count()));
    }
    if (*ms > 0) r.timeout = std::chrono::milliseconds(*ms);
  }
  const nlohmann::json* sig = jsonObject(*doc, "signal");
  if (sig == nullptr) return invalid("signal", "required (an object)");
  v1::Signal& s = r.signal;
  auto source = parseLocalSignalSource("signal.source", jsonStringOr(*sig, "source"));
  if (!source.ok()) return source.status();
  s.set_source(*source);
  s.set_rule(jsonStringOr(*sig, "rule"));
  if (auto sev = jsonString(*sig, "severity"); sev && *sev != "unspecified") {
    auto parsed = parseSeverity("signal.severity", *sev);
    if (!parsed.ok()) return parsed.status();
    s.set_severity(*parsed);
  }
  if (sig->contains("addresses")) {
    const nlohmann::json* list = jsonArray(*sig, "addresses");
    if (list == nullptr) return invalid("signal.addresses", "expected an array of strings");
    if (list->size() > static_cast<size_t>(kMaxSignalAddresses)) {
      return invalid("signal.addresses",
                     fmt::format("{} addresses, at most {}", list->size(), kMaxSignalAddresses));
    }
    for (const auto& a : *list) {
      if (!a.is_string()) return invalid("signal.addresses", "expected an array of strings");
      s.add_addresses(a.get_ref<const std::string&>());
    }
  }
  if (sig->contains("ttl_seconds")) {
    auto ttl = jsonUint(*sig, "ttl_seconds");
    if (!ttl || *ttl > UINT32_MAX) return invalid("signal.ttl_seconds", "expected seconds");
    s.set_ttl_seconds(static_cast<uint32_t>(*ttl));
  }
  s.set_idempotency_key(jsonStringOr(*sig, "idempotency_key"));
  s.set_resolved(jsonBoolOr(*sig, "resolved"));
  s.set_payload_sha256(jsonStringOr(*sig, "payload_sha256"));
  if (sig->contains("labels")) {
    const nlohmann::json* labels = jsonObject(*sig, "labels");
    if (labels == nullptr) return invalid("signal.labels", "expected an object of strings");
    for (const auto& [k, v] : labels->items()) {
      if (!v.is_string()) {
        return invalid(fmt::format("signal.labels[{}]", k), "expected a string");
      }
      (*s.mutable_labels())[k] = v.get_ref<const std::string&>();
    }
  }
  if (auto st = checkLocalSignal(s); !st.ok()) return st;
  return r;
}

std::string encodeSignalResponse(const SignalResponse& response) {
  nlohmann::json doc = {{"result", std::string(signalResultName(response.result))}};
  if (response.result == SignalResult::kRecorded) {
    doc["signal_id"] = response.signal_id;
    doc["disposition"] = std::string(dispositionName(response.disposition));
  } else {
    doc["error"] = response.error;
  }
  return dumpJson(doc) + "\n";
}

absl::StatusOr<SignalResponse> decodeSignalResponse(std::string_view line) {
  line = stripNewline(line);
  auto doc = parseForeignJson(line, 4);
  if (!doc || !doc->is_object()) {
    return absl::DataLossError("the agent's answer is not a JSON object");
  }
  SignalResponse r;
  std::string result = jsonStringOr(*doc, "result");
  auto it = std::find_if(kResults.begin(), kResults.end(),
                         [&](const auto& p) { return p.first == result; });
  if (it == kResults.end()) {
    // The status socket's refusal ({"error":...}) and answers of unknown versions.
    std::string error = jsonStringOr(*doc, "error");
    if (error.empty()) return absl::DataLossError("the agent's answer has no result");
    r.result = SignalResult::kNotDelivered;
    r.error = std::move(error);
    return r;
  }
  r.result = it->second;
  r.signal_id = jsonStringOr(*doc, "signal_id");
  r.error = jsonStringOr(*doc, "error");
  std::string disposition = jsonStringOr(*doc, "disposition");
  for (const auto& [name, d] : kDispositions) {
    if (name == disposition) r.disposition = d;
  }
  if (r.result == SignalResult::kRecorded && r.signal_id.empty()) {
    return absl::DataLossError("the agent's answer says recorded without a signal id");
  }
  return r;
}

}  // namespace bulkhead::agent
