// controller/crowdsec: an answer of the CrowdSec LAPI's /v1/decisions/stream (outside input:
// the network). Whatever the bytes, parseStreamAnswer fails with a message or gives decisions
// each of which toSignal either skips or turns into a signal with one valid address.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/parse.h"
#include "controller/crowdsec/decisions.h"

namespace cs = bulkhead::controller::crowdsec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)cs::parseGoDuration(text);
  auto answer = cs::parseStreamAnswer(text);
  if (!answer.ok()) {
    if (answer.status().message().empty()) std::abort();
    return 0;
  }
  for (bool resolved : {false, true}) {
    for (const cs::Decision& d : resolved ? answer->deleted : answer->added) {
      cs::Conversion c = cs::toSignal(d, resolved, "");
      if (c.signal.has_value() == (c.skipped != cs::Skip::kNone)) std::abort();
      if (!c.signal) continue;
      if (c.signal->addresses_size() != 1) std::abort();
      if (!bulkhead::parseCidr("a", c.signal->addresses(0)).ok()) std::abort();
      if (c.signal->rule().size() > 256) std::abort();
      if (c.signal->resolved() != resolved) std::abort();
      if (cs::blockedCidr(d) != c.signal->addresses(0)) std::abort();
    }
  }
  return 0;
}
