// The pieces every YAML file parser of ours shares (exemption sets, playbooks): one document
// per file read safely, "FILE:LINE: field: problem" errors, typed field access, and reading a
// directory of *.yaml files. Pure but for readYamlDir.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/format.h"

namespace bulkhead {

// Collects "FILE:LINE: field: problem" lines for one file.
class YamlErrors {
 public:
  explicit YamlErrors(std::string_view file) : file_(file) {}

  void add(int line, std::string_view field, std::string_view problem) {
    lines_.push_back(fmt::format("{}:{}: {}: {}", file_, line, field, problem));
  }
  // `status` already reads "field: problem" (the parse.h convention).
  void add(int line, const absl::Status& status) {
    lines_.push_back(fmt::format("{}:{}: {}", file_, line, status.message()));
  }
  bool empty() const { return lines_.empty(); }
  size_t count() const { return lines_.size(); }
  const std::vector<std::string>& lines() const { return lines_; }
  // InvalidArgument with one line per problem.
  absl::Status status() const;

 private:
  std::string file_;
  std::vector<std::string> lines_;
};

std::string joinLines(const std::vector<std::string>& lines);

// 1-based line of `node`, or `fallback` when yaml-cpp has no mark for it.
int lineOf(const YAML::Node& node, int fallback);

// "nothing", "a scalar", "a list", "a mapping": for "expected X, found Y" messages.
const char* kindOf(const YAML::Node& node);

// The one document of `text`, which must be a mapping. Otherwise nullopt, with the reason in
// `errors` ("yaml: ..."): a syntax error (plus `hint(line)` when it has one), more than one
// document ("one UNIT per file"), an empty file or another kind of node (`expected` says what
// the file holds, e.g. "a mapping with name, description, rules").
std::optional<YAML::Node> loadOneMapping(
    std::string_view text, std::string_view unit, std::string_view expected, YamlErrors& errors,
    const std::function<std::string(int line)>& hint = nullptr);

// The scalar text of `node`, or nullopt with "field: expected WHAT, found a list".
std::optional<std::string> scalarOf(const YAML::Node& node, int line, std::string_view field,
                                    std::string_view what, YamlErrors& errors);

// `true` or `false`, or nullopt with "field: invalid value "X": expected true or false".
std::optional<bool> boolOf(const YAML::Node& node, int line, std::string_view field,
                           YamlErrors& errors);

// Iterates a mapping's entries, reporting non-scalar and duplicate keys; calls
// `fn(key, value, key_line)` for the others.
template <typename Fn>
void forEachEntry(const YAML::Node& map, int map_line, YamlErrors& errors, Fn fn) {
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

struct YamlDir {
  std::vector<std::pair<std::string, std::string>> files;  // (name, content), in name order
  std::vector<std::string> errors;  // "NAME:1: file: cannot read", one per unreadable file
};

// Every *.yaml / *.yml regular file directly in `dir` (not recursive; names starting with '.'
// skipped). A missing or unlistable directory is an error "FIELD: ..." naming the path.
absl::StatusOr<YamlDir> readYamlDir(const std::string& dir, std::string_view field);

}  // namespace bulkhead
