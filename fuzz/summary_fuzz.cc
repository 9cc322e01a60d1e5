// evidence/summary on the members of a bundle (what `evidence show` reads from an
// attacker-supplied upload), without the tar.gz wrapping so the fuzzer reaches the JSON logic.
// Input format (also how the seeds are written): members start with a line "@@ PATH" and hold
// the lines up to the next such line, e.g.
//   @@ artifacts/processes.jsonl
//   {"pid": 1, "comm": "init"}
// The summary must serialise (strict UTF-8) and render.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "evidence/summary.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> members;
  std::string* current = nullptr;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.starts_with("@@ ")) {
      current = &members[std::string(line.substr(3))];
    } else if (current != nullptr) {
      current->append(line);
      current->push_back('\n');
    }
  }
  const nlohmann::json summary = bulkhead::evidence::summarizeMembers(members);
  (void)summary.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  (void)bulkhead::evidence::renderSummary(summary);
  return 0;
}
