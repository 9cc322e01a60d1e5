#include "common/policy.h"

#include <sys/socket.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/resolve.h"

namespace bulkhead {
namespace {

namespace v1 = bulkhead::v1;

// Collects "FILE:LINE: field: problem" lines for one file.
class Errors {
 public:
  explicit Errors(std::string_view file) : file_(file) {}

  void add(int line, std::string_view field, std::string_view problem) {
    lines_.push_back(fmt::format("{}:{}: {}: {}", file_, line, field, problem));
  }
  // `status` already reads "field: problem" (the parse.h convention).
  void add(int line, const absl::Status& status) {
    lines_.push_back(fmt::format("{}:{}: {}", file_, line, status));
  }
  bool empty() const { return lines_.empty(); }
  const std::vector<std::string>& lines() const { return lines_; }

 private:
  std::string file_;
  std::vector<std::string> lines_;
};

std::string joinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += '\n';
    out += l;
  }
  return out;
}

// 1-based line of `node`, or `fallback` when yaml-cpp has no mark for it.
int lineOf(const YAML::Node& node, int fallback) {
  int line = node.Mark().line;
  return line >= 0 ? line + 1 : fallback;
}

// Records where each document's top node starts, from yaml-cpp's event parser.
class TopNodeMarks final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;  // one per document read

  void OnDocumentStart(const YAML::Mark&) override { pending_ = true; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { top(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { top(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    top(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    top(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    top(mark);
  }
  void OnMapEnd() override {}

 private:
  void top(const YAML::Mark& mark) {
    if (pending_) marks.push_back(mark);
    pending_ = false;
  }
  bool pending_ = false;
};

// The top-node marks of the first `max_documents` documents of `text`. Bounded on purpose:
// yaml-cpp 0.7's LoadAll never returns on some malformed streams (one starting with ","), whose
// parser reports an empty document without consuming the offending token, forever, allocating
// a node each time. Throws YAML::Exception on a syntax error, as LoadAll does.
std::vector<YAML::Mark> documentMarks(const std::string& text, size_t max_documents) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  TopNodeMarks handler;
  for (size_t i = 0; i < max_documents && parser.HandleNextDocument(handler); ++i) {
  }
  return handler.marks;
}

const char* kindOf(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Undefined: break;
  }
  return "an undefined value";
}

// The scalar text of `node`, or an error "field: expected WHAT, found a list".
std::optional<std::string> scalarOf(const YAML::Node& node, int line, std::string_view field,
                                    std::string_view what, Errors& errors) {
  if (!node.IsScalar()) {
    errors.add(line, field, fmt::format("expected {}, found {}", what, kindOf(node)));
    return std::nullopt;
  }
  return node.Scalar();
}

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

// Iterates a mapping's entries, reporting non-scalar and duplicate keys; calls
// `fn(key, value, key_line)` for the others.
template <typename Fn>
void forEachEntry(const YAML::Node& map, int map_line, Errors& errors, Fn fn) {
  std::set<std::string> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    int key_line = lineOf(key, map_line);
    if (!key.IsScalar()) {
      errors.add(key_line, "key", fmt::format("expected a field name, found {}", kindOf(key)));
      continue;
    }
    const std::string& name = key.Scalar();
    if (!seen.insert(name).second) {
      errors.add(key_line, name, "field given twice");
      continue;
    }
    fn(name, value, key_line);
  }
}

void parsePortField(const YAML::Node& node, int line, PolicyRule& rule, Errors& errors) {
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

std::optional<PolicyRule> parseRule(const YAML::Node& node, int line, Errors& errors) {
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
  Errors errors(file_name);
  YAML::Node root;
  try {
    const std::string text(yaml);
    const std::vector<YAML::Mark> docs = documentMarks(text, 2);
    if (docs.size() > 1) {
      const bool stalled = docs[1].pos == docs[0].pos;  // the parser read nothing more
      const YAML::Mark& at = stalled ? docs[0] : docs[1];
      errors.add(at.line >= 0 ? at.line + 1 : 1, "yaml",
                 stalled ? "not YAML the parser can read past (a stray \",\"?)"
                         : "more than one document: one exemption set per file");
      return absl::InvalidArgumentError(joinLines(errors.lines()));
    }
    root = YAML::Load(text);  // the one document
  } catch (const YAML::Exception& e) {
    int line = e.mark.line >= 0 ? e.mark.line + 1 : 1;
    errors.add(line, "yaml", e.msg + yamlHint(yaml, line));
    return absl::InvalidArgumentError(joinLines(errors.lines()));
  }
  if (root.IsNull()) {
    errors.add(1, "yaml", "empty file: expected a mapping with name, description, rules");
    return absl::InvalidArgumentError(joinLines(errors.lines()));
  }
  if (!root.IsMap()) {
    errors.add(
        lineOf(root, 1), "yaml",
        fmt::format("expected a mapping with name, description, rules, found {}", kindOf(root)));
    return absl::InvalidArgumentError(joinLines(errors.lines()));
  }

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
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors.lines()));
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
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(
        fmt::format("policy-dir: \"{}\" is not a readable directory{}", dir,
                    ec ? fmt::format(" ({})", ec.message()) : std::string()));
  }
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::string ext = it->path().extension().string();
    if (name.empty() || name.front() == '.' || (ext != ".yaml" && ext != ".yml")) continue;
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec)) continue;
    names.push_back(std::move(name));
  }
  if (ec) {
    return absl::InvalidArgumentError(
        fmt::format("policy-dir: cannot list \"{}\": {}", dir, ec.message()));
  }
  std::sort(names.begin(), names.end());
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<std::string> errors;
  for (const auto& name : names) {
    std::ifstream in(fs::path(dir) / name, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) {
      errors.push_back(fmt::format("{}:1: file: cannot read", name));
      continue;
    }
    files.emplace_back(name, text.str());
  }
  auto library = buildPolicyLibrary(files);
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
