#include "common/yaml_doc.h"

#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/status/status.h"

namespace bulkhead {
namespace {

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

}  // namespace

absl::Status YamlErrors::status() const {
  if (lines_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(joinLines(lines_));
}

std::string joinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += '\n';
    out += l;
  }
  return out;
}

int lineOf(const YAML::Node& node, int fallback) {
  int line = node.Mark().line;
  return line >= 0 ? line + 1 : fallback;
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

std::optional<YAML::Node> loadOneMapping(std::string_view yaml, std::string_view unit,
                                         std::string_view expected, YamlErrors& errors,
                                         const std::function<std::string(int line)>& hint) {
  YAML::Node root;
  try {
    const std::string text(yaml);
    const std::vector<YAML::Mark> docs = documentMarks(text, 2);
    if (docs.size() > 1) {
      const bool stalled = docs[1].pos == docs[0].pos;  // the parser read nothing more
      const YAML::Mark& at = stalled ? docs[0] : docs[1];
      errors.add(at.line >= 0 ? at.line + 1 : 1, "yaml",
                 stalled ? "not YAML the parser can read past (a stray \",\"?)"
                         : fmt::format("more than one document: one {} per file", unit));
      return std::nullopt;
    }
    root = YAML::Load(text);  // the one document
  } catch (const YAML::Exception& e) {
    int line = e.mark.line >= 0 ? e.mark.line + 1 : 1;
    errors.add(line, "yaml", e.msg + (hint ? hint(line) : std::string()));
    return std::nullopt;
  }
  if (root.IsNull()) {
    errors.add(1, "yaml", fmt::format("empty file: expected {}", expected));
    return std::nullopt;
  }
  if (!root.IsMap()) {
    errors.add(lineOf(root, 1), "yaml",
               fmt::format("expected {}, found {}", expected, kindOf(root)));
    return std::nullopt;
  }
  return root;
}

std::optional<std::string> scalarOf(const YAML::Node& node, int line, std::string_view field,
                                    std::string_view what, YamlErrors& errors) {
  if (!node.IsScalar()) {
    errors.add(line, field, fmt::format("expected {}, found {}", what, kindOf(node)));
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<bool> boolOf(const YAML::Node& node, int line, std::string_view field,
                           YamlErrors& errors) {
  auto text = scalarOf(node, line, field, "true or false", errors);
  if (!text) return std::nullopt;
  if (*text == "true") return true;
  if (*text == "false") return false;
  errors.add(line, field, fmt::format("invalid value \"{}\": expected true or false", *text));
  return std::nullopt;
}

absl::StatusOr<YamlDir> readYamlDir(const std::string& dir, std::string_view field) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(
        fmt::format("{}: \"{}\" is not a readable directory{}", field, dir,
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
        fmt::format("{}: cannot list \"{}\": {}", field, dir, ec.message()));
  }
  std::sort(names.begin(), names.end());
  YamlDir out;
  for (const auto& name : names) {
    std::ifstream in(fs::path(dir) / name, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) {
      out.errors.push_back(fmt::format("{}:1: file: cannot read", name));
      continue;
    }
    out.files.emplace_back(name, text.str());
  }
  return out;
}

}  // namespace bulkhead
