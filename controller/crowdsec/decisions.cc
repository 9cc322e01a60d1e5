#include "controller/crowdsec/decisions.h"

#include <limits>
#include <nlohmann/json.hpp>

#include "common/format.h"
#include "common/parse.h"

namespace bulkhead::controller::crowdsec {
namespace {

namespace v1 = bulkhead::v1;
using nlohmann::json;

constexpr size_t kMaxRuleBytes = 256;

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

absl::Status bad(const std::string& what) {
  return absl::InvalidArgumentError(fmt::format("crowdsec stream answer: {}", what));
}

absl::StatusOr<std::string> stringField(const json& d, const char* name, const std::string& where,
                                        bool required) {
  auto it = d.find(name);
  if (it == d.end() || it->is_null()) {
    if (required) return bad(fmt::format("{}: {}: missing", where, name));
    return std::string();
  }
  if (!it->is_string()) return bad(fmt::format("{}: {}: not a string", where, name));
  return it->get<std::string>();
}

absl::StatusOr<Decision> parseDecision(const json& d, const std::string& where) {
  if (!d.is_object()) return bad(fmt::format("{}: not an object", where));
  Decision out;
  auto id = d.find("id");
  if (id == d.end() || !id->is_number_integer()) {
    return bad(fmt::format("{}: id: missing or not an integer", where));
  }
  out.id = id->get<int64_t>();
  struct Field {
    const char* name;
    std::string* dest;
    bool required;
  };
  for (const Field& f : {Field{"origin", &out.origin, false}, Field{"type", &out.type, true},
                         Field{"scope", &out.scope, true}, Field{"value", &out.value, true},
                         Field{"scenario", &out.scenario, false}}) {
    auto v = stringField(d, f.name, where, f.required);
    if (!v.ok()) return v.status();
    *f.dest = *std::move(v);
  }
  auto duration = stringField(d, "duration", where, true);
  if (!duration.ok()) return duration.status();
  auto ms = parseGoDuration(*duration);
  if (!ms.ok()) return bad(fmt::format("{}: duration: {}", where, ms.status().message()));
  out.duration_ms = *ms;
  if (auto s = d.find("simulated"); s != d.end() && !s->is_null()) {
    if (!s->is_boolean()) return bad(fmt::format("{}: simulated: not a boolean", where));
    out.simulated = s->get<bool>();
  }
  return out;
}

absl::Status parseList(const json& root, const char* name, std::vector<Decision>& out) {
  auto it = root.find(name);
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) return bad(fmt::format("\"{}\": neither null nor an array", name));
  out.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    auto d = parseDecision((*it)[i], fmt::format("{}[{}]", name, i));
    if (!d.ok()) return d.status();
    out.push_back(*std::move(d));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StreamAnswer> parseStreamAnswer(std::string_view body) {
  json root = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return bad("not JSON");
  if (!root.is_object()) return bad("not a JSON object");
  StreamAnswer out;
  if (auto s = parseList(root, "new", out.added); !s.ok()) return s;
  if (auto s = parseList(root, "deleted", out.deleted); !s.ok()) return s;
  return out;
}

absl::StatusOr<int64_t> parseGoDuration(std::string_view text) {
  auto invalid = [&] {
    return absl::InvalidArgumentError(fmt::format(
        "invalid duration \"{}\": expected a Go duration such as 3h59m58.5s", text.substr(0, 64)));
  };
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return invalid();
  if (s == "0") return 0;
  // Sum in nanoseconds as long double: a decision lasts at most years, far from its limits.
  long double total_ns = 0;
  while (!s.empty()) {
    size_t i = 0;
    long double value = 0;
    bool digits = false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      value = value * 10 + (s[i] - '0');
      digits = true;
      ++i;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      long double scale = 0.1L;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        value += (s[i] - '0') * scale;
        scale /= 10;
        digits = true;
        ++i;
      }
    }
    if (!digits) return invalid();
    s.remove_prefix(i);
    long double unit = 0;
    for (auto [name, ns] : {std::pair<std::string_view, long double>{"ns", 1.0L},
                            {"us", 1e3L},
                            {"\xC2\xB5s", 1e3L},  // µs (micro sign)
                            {"\xCE\xBCs", 1e3L},  // μs (Greek mu)
                            {"ms", 1e6L},
                            {"s", 1e9L},
                            {"m", 60e9L},
                            {"h", 3600e9L}}) {
      // Longest match first is implied by the order: "ms" before "m", "ns"/"us" before "s".
      if (s.substr(0, name.size()) == name) {
        unit = ns;
        s.remove_prefix(name.size());
        break;
      }
    }
    if (unit == 0) return invalid();
    total_ns += value * unit;
    if (total_ns > 1e18L) return invalid();  // ~31 years: not a decision's duration
  }
  const auto ms = static_cast<int64_t>(total_ns / 1e6L);
  return negative ? -ms : ms;
}

const char* skipName(Skip why) {
  switch (why) {
    case Skip::kNone: return "mirrored";
    case Skip::kScope: return "scope";
    case Skip::kType: return "type";
    case Skip::kSimulated: return "simulated";
    case Skip::kBadValue: return "bad value";
  }
  return "?";
}

namespace {

// The canonical CIDR, or the reason the decision is not mirrored.
Skip check(const Decision& d, std::string& cidr) {
  if (d.simulated) return Skip::kSimulated;
  const bool ip = equalsIgnoreCase(d.scope, "Ip");
  const bool range = equalsIgnoreCase(d.scope, "Range");
  if (!ip && !range) return Skip::kScope;
  if (!equalsIgnoreCase(d.type, "ban")) return Skip::kType;
  // An Ip is one address (no prefix); a Range is a network.
  if (ip && d.value.find('/') != std::string::npos) return Skip::kBadValue;
  if (range && d.value.find('/') == std::string::npos) return Skip::kBadValue;
  auto parsed = parseCidr("value", d.value);
  if (!parsed.ok()) return Skip::kBadValue;
  cidr = parsed->toString();
  return Skip::kNone;
}

}  // namespace

std::string blockedCidr(const Decision& decision) {
  std::string cidr;
  return check(decision, cidr) == Skip::kNone ? cidr : std::string();
}

Conversion toSignal(const Decision& decision, bool resolved, const std::string& payload_sha256) {
  Conversion out;
  std::string cidr;
  out.skipped = check(decision, cidr);
  if (out.skipped != Skip::kNone) return out;
  v1::Signal s;
  s.set_source(v1::SIGNAL_SOURCE_CROWDSEC);
  std::string rule = decision.scenario.empty() ? decision.origin : decision.scenario;
  if (rule.size() > kMaxRuleBytes) {
    size_t cut = kMaxRuleBytes;
    while (cut > 0 && (static_cast<unsigned char>(rule[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
    rule.resize(cut);
  }
  s.set_rule(rule);
  s.add_addresses(cidr);
  if (!resolved) {
    constexpr int64_t kMaxSeconds = std::numeric_limits<uint32_t>::max();
    const int64_t seconds = decision.duration_ms <= 0 ? 1 : (decision.duration_ms + 999) / 1000;
    s.set_ttl_seconds(static_cast<uint32_t>(std::min(seconds, kMaxSeconds)));
  }
  s.set_idempotency_key(fmt::format("crowdsec:{}{}", decision.id, resolved ? ":deleted" : ""));
  s.set_resolved(resolved);
  s.set_payload_sha256(payload_sha256);
  auto& labels = *s.mutable_labels();
  labels["decision_id"] = std::to_string(decision.id);
  labels["scope"] = decision.scope;
  labels["type"] = decision.type;
  if (!decision.origin.empty()) labels["origin"] = decision.origin.substr(0, 64);
  out.signal = std::move(s);
  return out;
}

}  // namespace bulkhead::controller::crowdsec
