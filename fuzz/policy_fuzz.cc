// common/policy: an exemption-set YAML file. Whatever the text, parsePolicy either fails with
// a message or gives a set that a library accepts once and refuses twice (duplicate name).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "common/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto set = bulkhead::parsePolicy("fuzz.yaml", text);
  if (!set.ok()) {
    if (set.status().message().empty()) std::abort();
    return 0;
  }
  if (set->rules.empty()) std::abort();
  if (!bulkhead::buildPolicyLibrary({{"a.yaml", text}}).ok()) std::abort();
  if (bulkhead::buildPolicyLibrary({{"a.yaml", text}, {"b.yaml", text}}).ok()) std::abort();
  return 0;
}
