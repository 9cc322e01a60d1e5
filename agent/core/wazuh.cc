#include "agent/core/wazuh.h"

#include <vector>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/json.h"
#include "common/parse.h"

namespace bulkhead::agent {
namespace v1 = bulkhead::v1;
namespace {

absl::Status invalid(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("wazuh message: {}: {}", field, why));
}

// The label value as the agent forwards it: at most 256 bytes.
std::string clip(std::string s) {
  if (s.size() > 256) s.resize(256);
  return s;
}

// Rule fields as strings: Wazuh writes the id as a string, the level as a number.
std::string scalarText(const nlohmann::json& doc, std::string_view key) {
  if (auto s = jsonString(doc, key)) return *s;
  if (auto i = jsonInt(doc, key)) return std::to_string(*i);
  return "";
}

// A host address without its prefix length, as Wazuh's own scripts key their state.
std::string bareAddress(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) return cidr;
  std::string_view len = std::string_view(cidr).substr(slash + 1);
  bool v6 = cidr.find(':') != std::string::npos;
  if ((v6 && len == "128") || (!v6 && len == "32")) return cidr.substr(0, slash);
  return cidr;
}

absl::Status addAddress(v1::Signal& signal, std::string_view path, const std::string& text) {
  if (text.empty()) return absl::OkStatus();
  auto cidr = parseCidr(path, text);
  if (!cidr.ok()) {
    return invalid(path, fmt::format("\"{}\" is not an IP address or CIDR", text));
  }
  signal.add_addresses(cidr->toString());
  return absl::OkStatus();
}

void applyRule(const nlohmann::json* rule, WazuhMessage& m) {
  if (rule == nullptr) return;
  std::string id = scalarText(*rule, "id");
  std::string description = jsonStringOr(*rule, "description");
  if (auto level = jsonInt(*rule, "level")) m.rule_level = *level;
  if (!id.empty()) {
    m.signal.set_rule(clip(id));
  } else if (!description.empty()) {
    m.signal.set_rule(clip(description));
  }
  auto& labels = *m.signal.mutable_labels();
  // The key as a std::string: gcc 12 reports a false -Warray-bounds in protobuf's Map when a
  // literal longer than std::string's inline buffer is the key (seen with the precompiled header).
  if (!description.empty()) labels[std::string("rule_description")] = clip(description);
  if (m.rule_level >= 0) labels["rule_level"] = std::to_string(m.rule_level);
  if (const nlohmann::json* groups = jsonArray(*rule, "groups")) {
    std::string joined;
    for (const auto& g : *groups) {
      if (!g.is_string()) continue;
      if (!joined.empty()) joined += ",";
      joined += g.get_ref<const std::string&>();
    }
    if (!joined.empty()) labels["rule_groups"] = clip(joined);
  }
}

}  // namespace

v1::Severity severityForWazuhLevel(int64_t level) {
  if (level < 0) return v1::SEVERITY_MEDIUM;
  if (level <= 3) return v1::SEVERITY_INFO;
  if (level <= 6) return v1::SEVERITY_LOW;
  if (level <= 9) return v1::SEVERITY_MEDIUM;
  if (level <= 11) return v1::SEVERITY_HIGH;
  return v1::SEVERITY_CRITICAL;
}

absl::StatusOr<WazuhMessage> parseWazuhMessage(std::string_view text, v1::Severity severity) {
  if (text.size() > kMaxWazuhMessageBytes) {
    return invalid("message", fmt::format("larger than {} bytes", kMaxWazuhMessageBytes));
  }
  auto doc = parseForeignJson(text);
  if (!doc || !doc->is_object()) return invalid("message", "not a JSON object");
  WazuhMessage m;
  m.signal.set_source(v1::SIGNAL_SOURCE_WAZUH);
  m.command = jsonStringOr(*doc, "command");
  std::string alert_id;
  if (const nlohmann::json* wazuh = jsonObject(*doc, "wazuh")) {
    m.format = 5;
    if (m.command != "enable" && m.command != "disable") {
      return invalid("command", fmt::format("\"{}\" (expected enable or disable)", m.command));
    }
    m.resolved = m.command == "disable";
    if (const nlohmann::json* source = jsonObject(*doc, "source")) {
      if (auto st = addAddress(m.signal, "source.ip", jsonStringOr(*source, "ip")); !st.ok()) {
        return st;
      }
    }
    if (const nlohmann::json* ar = jsonObject(*wazuh, "active_response")) {
      if (auto t = jsonUint(*ar, "stateful_timeout"); t && *t <= UINT32_MAX) {
        m.signal.set_ttl_seconds(static_cast<uint32_t>(*t));
      }
      std::string name = jsonStringOr(*ar, "name");
      if (!name.empty()) {
        (*m.signal.mutable_labels())["active_response"] = clip(name);
        m.signal.set_rule(clip(name));  // 5.x carries no rule: the response's name stands in
      }
    }
    applyRule(jsonObject(*doc, "rule"), m);  // not in the documented 5.x shape; used if present
    if (const nlohmann::json* agent = jsonObject(*wazuh, "agent")) {
      std::string name = jsonStringOr(*agent, "name");
      if (!name.empty()) (*m.signal.mutable_labels())["agent_name"] = clip(name);
    }
    if (const nlohmann::json* user = jsonObject(*doc, "user")) {
      std::string name = jsonStringOr(*user, "name");
      if (!name.empty()) (*m.signal.mutable_labels())["user"] = clip(name);
    }
  } else {
    if (!doc->contains("version") && !doc->contains("parameters")) {
      return invalid("message", "neither a 4.x (version, parameters) nor a 5.x (wazuh) message");
    }
    if (m.command != "add" && m.command != "delete") {
      return invalid("command", fmt::format("\"{}\" (expected add or delete)", m.command));
    }
    m.resolved = m.command == "delete";
    const nlohmann::json* params = jsonObject(*doc, "parameters");
    if (params == nullptr) return invalid("parameters", "required (an object)");
    m.program = jsonStringOr(*params, "program");
    if (const nlohmann::json* alert = jsonObject(*params, "alert")) {
      alert_id = scalarText(*alert, "id");
      if (const nlohmann::json* data = jsonObject(*alert, "data")) {
        auto st = addAddress(m.signal, "parameters.alert.data.srcip", jsonStringOr(*data, "srcip"));
        if (!st.ok()) return st;
        std::string user = jsonStringOr(*data, "dstuser");
        if (!user.empty()) (*m.signal.mutable_labels())["dstuser"] = clip(user);
      }
      applyRule(jsonObject(*alert, "rule"), m);
      if (const nlohmann::json* agent = jsonObject(*alert, "agent")) {
        std::string name = jsonStringOr(*agent, "name");
        if (!name.empty()) (*m.signal.mutable_labels())["agent_name"] = clip(name);
      }
    }
  }
  if (m.signal.rule().empty()) m.signal.set_rule("wazuh-active-response");
  m.signal.set_resolved(m.resolved);
  m.signal.set_severity(severity != v1::SEVERITY_UNSPECIFIED ? severity
                                                             : severityForWazuhLevel(m.rule_level));
  if (!alert_id.empty()) {
    m.signal.set_idempotency_key(clip(
        fmt::format("wazuh:{}:{}:{}", alert_id, m.signal.rule(), m.resolved ? "end" : "start")));
  }
  return m;
}

bool needsCheckKeys(const WazuhMessage& message) {
  return message.format == 4 && message.command == "add";
}

std::string checkKeysMessage(const WazuhMessage& message) {
  std::vector<std::string> keys;
  for (const auto& a : message.signal.addresses()) keys.push_back(bareAddress(a));
  if (keys.empty()) keys.push_back(message.signal.rule());
  nlohmann::json doc = {
      {"version", 1},
      {"origin",
       {{"name", message.program.empty() ? "bulkhead-ar" : message.program},
        {"module", "active-response"}}},
      {"command", "check_keys"},
      {"parameters", {{"keys", keys}}},
  };
  return dumpJson(doc) + "\n";
}

absl::StatusOr<WazuhControl> parseWazuhControl(std::string_view line) {
  auto doc = parseForeignJson(line, 8);
  if (!doc || !doc->is_object()) {
    return absl::InvalidArgumentError("wazuh-execd's answer to check_keys is not a JSON object");
  }
  std::string command = jsonStringOr(*doc, "command");
  if (command == "continue") return WazuhControl::kContinue;
  if (command == "abort") return WazuhControl::kAbort;
  return absl::InvalidArgumentError(fmt::format(
      "wazuh-execd's answer to check_keys: command \"{}\" (expected continue or abort)", command));
}

}  // namespace bulkhead::agent
