#include "common/policy.h"

#include <sys/socket.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/resolve.h"
#include "common/yaml_doc.h"

namespace bulkhead {
namespace {

namespace v1 = bulkhead::v1;

bool isSetName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

// RFC 1123 host name: dot-separated labels of [A-Za-z0-9-]{1,63}, no leading or trailing '-',
// at most 253 characters, an optional final dot; the last label is not all digits (so a
// mistyped IPv4 address is not taken for a name).
bool isDnsName(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
  std::string_view last;
  size_t start = 0;
  while (start <= s.size()) {
    size_t dot = std::min(s.find('.', start), s.size());
    std::string_view label = s.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
    last = label;
    start = dot + 1;
  }
  return !std::all_of(last.begin(), last.end(),
                      [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

void parsePortField(const YAML::Node& node, int line, PolicyRule& rule, YamlErrors& errors) {
  auto text = scalarOf(node, line, "port", "a port (5432) or a range (\"6000-6010\")", errors);
  if (!text) return;
  size_t dash = text->find('-');
  if (dash == std::string::npos) {
    auto port = parsePort("port", *text);
    if (!port.ok()) return errors.add(line, port.status());
    rule.port_first = rule.port_last = *port;
    return;
  }
  std::string_view all(*text);
  auto first = parsePort("port", all.substr(0, dash));
  auto last = parsePort("port", all.substr(dash + 1));
  if (!first.ok() || !last.ok()) {
    return errors.add(
        line, "port",
        fmt::format("invalid value \"{}\": a range is FIRST-LAST, each 1 to 65535", *text));
  }
  if (*first > *last) {
    return errors.add(line, "port", fmt::format("invalid value \"{}\": range is backwards", *text));
  }
  rule.port_first = *first;
  rule.port_last = *last;
}

std::optional<PolicyRule> parseRule(const YAML::Node& node, int line, YamlErrors& errors) {
  if (!node.IsMap()) {
    errors.add(line, "rules",
               fmt::format("each rule must be a mapping (direction, proto, remote, port), "
                           "found {}",
                           kindOf(node)));
    return std::nullopt;
  }
  PolicyRule rule;
  rule.line = line;
  size_t errors_before = errors.lines().size();
  bool has_direction = false, has_proto = false, has_remote = false;
  int port_line = 0;
  forEachEntry(
      node, line, errors, [&](const std::string& key, const YAML::Node& value, int key_line) {
        int vline = lineOf(value, key_line);
        if (key == "direction") {
          has_direction = true;
          auto text = scalarOf(value, vline, key, "in or out", errors);
          if (!text) return;
          if (*text == "in")
            rule.direction = v1::DIRECTION_IN;
          else if (*text == "out")
            rule.direction = v1::DIRECTION_OUT;
          else
            errors.add(vline, key, fmt::format("invalid value \"{}\": expected in or out", *text));
        } else if (key == "proto") {
          has_proto = true;
          auto text = scalarOf(value, vline, key, "tcp, udp, icmp or any", errors);
          if (!text) return;
          if (*text == "tcp")
            rule.protocol = v1::PROTOCOL_TCP;
          else if (*text == "udp")
            rule.protocol = v1::PROTOCOL_UDP;
          else if (*text == "icmp")
            rule.protocol = v1::PROTOCOL_ICMP;
          else if (*text == "any")
            rule.protocol = v1::PROTOCOL_ANY;
          else {
            errors.add(vline, key,
                       fmt::format("invalid value \"{}\": expected tcp, udp, icmp or any", *text));
          }
        } else if (key == "remote") {
          has_remote = true;
          auto text = scalarOf(value, vline, key, "a CIDR, an IP address or a DNS name", errors);
          if (!text) return;
          rule.remote = *text;
          auto cidr = parseCidr("remote", *text);
          if (cidr.ok()) {
            rule.remote_cidr = *cidr;
          } else if (text->find_first_of(":/") != std::string::npos || !isDnsName(*text)) {
            // Looks like an address (or is no valid name either): the CIDR error says why.
            errors.add(vline, "remote",
                       fmt::format("invalid value \"{}\": not an IPv4/IPv6 address, CIDR or DNS "
                                   "name",
                                   *text));
          }
        } else if (key == "port") {
          port_line = vline;
          parsePortField(value, vline, rule, errors);
        } else {
          errors.add(key_line, key, "unknown field (expected direction, proto, remote, port)");
        }
      });
  if (!has_direction) errors.add(line, "direction", "missing (required: in or out)");
  if (!has_proto) errors.add(line, "proto", "missing (required: tcp, udp, icmp or any)");
  if (!has_remote) errors.add(line, "remote", "missing (required: CIDR, address or DNS name)");
  if (port_line != 0 && has_proto && rule.protocol == v1::PROTOCOL_ICMP) {
    errors.add(port_line, "port", "not allowed with proto icmp (ICMP has no ports)");
  }
  if (errors.lines().size() != errors_before) return std::nullopt;
  return rule;
}

// When yaml-cpp fails on `selector: *` (an alias in YAML), say how to write it.
std::string yamlHint(std::string_view yaml, int line) {
  std::istringstream in{std::string(yaml)};
  std::string text;
  for (int i = 0; i < line && std::getline(in, text); ++i) {
  }
  auto pos = text.find("selector:");
  if (pos != std::string::npos && text.find('*', pos) != std::string::npos &&
      text.find('"', pos) == std::string::npos && text.find('\'', pos) == std::string::npos) {
    return " (write selector: \"*\" with quotes: a bare * is a YAML alias)";
  }
  return "";
}

}  // namespace

const ExemptionSet* PolicyLibrary::find(const std::string& name) const {
  auto it = sets.find(name);
  return it == sets.end() ? nullptr : &it->second;
}

absl::StatusOr<ExemptionSet> parsePolicy(std::string_view file_name, std::string_view yaml) {
  YamlErrors errors(file_name);
  std::optional<YAML::Node> doc =
      loadOneMapping(yaml, "exemption set", "a mapping with name, description, rules", errors,
                     [yaml](int line) { return yamlHint(yaml, line); });
  if (!doc) return errors.status();
  const YAML::Node& root = *doc;

  ExemptionSet set;
  set.file = std::string(file_name);
  bool has_name = false, has_description = false, has_rules = false;
  forEachEntry(root, 1, errors, [&](const std::string& key, const YAML::Node& value, int key_line) {
    int vline = lineOf(value, key_line);
    if (key == "name") {
      has_name = true;
      auto text = scalarOf(value, vline, key, "a set name", errors);
      if (!text) return;
      if (!isSetName(*text)) {
        return errors.add(vline, key,
                          fmt::format("invalid value \"{}\": must be 1-63 characters of "
                                      "[a-z0-9-]",
                                      *text));
      }
      set.name = *text;
      set.name_line = vline;
    } else if (key == "description") {
      has_description = true;
      auto text = scalarOf(value, vline, key, "a text", errors);
      if (!text) return;
      if (text->empty()) return errors.add(vline, key, "must not be empty");
      set.description = *text;
    } else if (key == "selector") {
      auto text = scalarOf(value, vline, key, "k=v[,k=v] or \"*\"", errors);
      if (!text) return;
      if (*text == "*") {
        set.all_hosts = true;
        return;
      }
      auto sel = parseSelector("selector", *text);
      if (!sel.ok()) return errors.add(vline, sel.status());
      set.selector = *sel;
    } else if (key == "rules") {
      has_rules = true;
      if (!value.IsSequence()) {
        return errors.add(vline, key,
                          fmt::format("expected a list of rules, found {}", kindOf(value)));
      }
      if (value.size() == 0) return errors.add(vline, key, "must hold at least one rule");
      for (const YAML::Node& item : value) {
        auto rule = parseRule(item, lineOf(item, vline), errors);
        if (rule) set.rules.push_back(std::move(*rule));
      }
    } else {
      errors.add(key_line, key, "unknown field (expected name, description, selector, rules)");
    }
  });
  if (!has_name) errors.add(1, "name", "missing (required)");
  if (!has_description) errors.add(1, "description", "missing (required)");
  if (!has_rules) errors.add(1, "rules", "missing (required: a list of rules)");
  if (!errors.empty()) return errors.status();
  return set;
}

absl::StatusOr<PolicyLibrary> buildPolicyLibrary(
    const std::vector<std::pair<std::string, std::string>>& files) {
  PolicyLibrary library;
  std::vector<std::string> errors;
  for (const auto& [file, text] : files) {
    auto set = parsePolicy(file, text);
    if (!set.ok()) {
      errors.push_back(std::string(set.status().message()));
      continue;
    }
    if (const ExemptionSet* first = library.find(set->name)) {
      errors.push_back(fmt::format("{}:{}: name: duplicate set \"{}\", first defined in {}:{}",
                                   file, set->name_line, set->name, first->file, first->name_line));
      continue;
    }
    std::string name = set->name;
    library.sets.emplace(std::move(name), std::move(*set));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors));
  return library;
}

absl::StatusOr<PolicyLibrary> loadPolicyDir(const std::string& dir) {
  auto read = readYamlDir(dir, "policy-dir");
  if (!read.ok()) return read.status();
  std::vector<std::string> errors = std::move(read->errors);
  auto library = buildPolicyLibrary(read->files);
  if (!library.ok()) errors.push_back(std::string(library.status().message()));
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors));
  return library;
}

std::vector<const ExemptionSet*> defaultSetsFor(const PolicyLibrary& library,
                                                const Labels& host_labels) {
  std::vector<const ExemptionSet*> out;
  for (const auto& [name, set] : library.sets) {  // std::map: by name
    if (set.all_hosts || (set.selector && selectorMatches(*set.selector, host_labels))) {
      out.push_back(&set);
    }
  }
  return out;
}

absl::StatusOr<std::vector<const ExemptionSet*>> selectSets(
    const PolicyLibrary& library, const Labels& host_labels,
    const std::vector<std::string>& requested, bool include_defaults) {
  std::map<std::string, const ExemptionSet*> chosen;
  if (include_defaults) {
    for (const ExemptionSet* set : defaultSetsFor(library, host_labels)) chosen[set->name] = set;
  }
  for (const auto& name : requested) {
    const ExemptionSet* set = library.find(name);
    if (set == nullptr) {
      std::string known;
      for (const auto& [n, s] : library.sets) known += (known.empty() ? "" : ", ") + n;
      return absl::InvalidArgumentError(
          fmt::format("exempt: unknown exemption set \"{}\" (known: {})", name,
                      known.empty() ? "none" : known));
    }
    chosen[name] = set;
  }
  std::vector<const ExemptionSet*> out;
  for (const auto& [name, set] : chosen) out.push_back(set);
  return out;
}

absl::StatusOr<std::vector<std::string>> GetaddrinfoResolver::resolve(const std::string& name) {
  auto addrs = resolveHost(name);
  if (addrs.ok()) std::sort(addrs->begin(), addrs->end());
  return addrs;
}

absl::StatusOr<std::vector<v1::ExemptionRule>> resolveExemptions(
    const std::vector<const ExemptionSet*>& sets, NameResolver& resolver) {
  std::vector<v1::ExemptionRule> out;
  std::set<std::string> seen;
  std::vector<std::string> errors;
  auto emit = [&](const ExemptionSet& set, const PolicyRule& rule, const Cidr& cidr) {
    v1::ExemptionRule r;
    r.set_direction(rule.direction);
    r.set_protocol(rule.protocol);
    r.set_remote_cidr(cidr.toString());
    r.mutable_ports()->set_first(rule.port_first);
    r.mutable_ports()->set_last(rule.port_last);
    r.set_set_name(set.name);
    std::string key = r.SerializeAsString();
    if (seen.insert(key).second) out.push_back(std::move(r));
  };
  for (const ExemptionSet* set : sets) {
    for (const PolicyRule& rule : set->rules) {
      if (rule.remote_cidr) {
        emit(*set, rule, *rule.remote_cidr);
        continue;
      }
      auto addrs = resolver.resolve(rule.remote);
      if (!addrs.ok() || addrs->empty()) {
        errors.push_back(fmt::format("exemption set \"{}\" ({}:{}): remote \"{}\": {}", set->name,
                                     set->file, rule.line, rule.remote,
                                     addrs.ok() ? std::string("resolved to no address")
                                                : std::string(addrs.status().message())));
        continue;
      }
      for (const std::string& a : *addrs) {
        auto cidr = parseCidr("address", a);
        if (!cidr.ok() || cidr->prefix_len != (cidr->family == AF_INET ? 32 : 128)) {
          errors.push_back(fmt::format(
              "exemption set \"{}\" ({}:{}): remote \"{}\": resolver returned \"{}\", not an "
              "IP address",
              set->name, set->file, rule.line, rule.remote, a));
          continue;
        }
        emit(*set, rule, *cidr);
      }
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors));
  return out;
}

}  // namespace bulkhead
