// common/parse: every operator/agent-supplied value parser on the same text, with the
// properties callers rely on: a CIDR prints to a text that parses back to itself and contains
// itself; a selector matches its own labels; durations are positive.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  using namespace bulkhead;

  if (auto d = parseDuration("ttl", text); d.ok() && d->count() <= 0) std::abort();
  (void)parseHostPort("controller", text);
  (void)parsePort("port", text);
  if (auto l = parseLabel("label", text); l.ok() && (l->first.empty() || l->second.empty())) {
    std::abort();
  }
  if (auto s = parseSelector("selector", text); s.ok() && !selectorMatches(*s, *s)) std::abort();
  if (auto c = parseCidr("cidr", text); c.ok()) {
    auto again = parseCidr("cidr", c->toString());
    if (!again.ok() || !(*again == *c) || !c->contains(*c)) std::abort();
  }
  return 0;
}
