// agent/linux/tamper_watch: one datagram of the nf_tables netlink event group. Any local
// process that can change the ruleset shapes these messages (table names, committer names).
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "agent/linux/tamper_watch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bulkhead::agent;
  std::vector<NftEvent> events;
  if (!parseNftEvents(data, size, &events).ok()) return 0;
  TamperAggregator aggregator(/*NFPROTO_INET*/ 1, "bulkhead");
  for (const NftEvent& e : events) {
    (void)nftMessageName(e.msg_type);
    aggregator.add(e);
  }
  if (aggregator.pending()) {
    const TamperEvent window = aggregator.take();
    if (window.messages == 0) std::abort();
  }
  return 0;
}
