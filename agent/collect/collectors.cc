#include "agent/collect/collectors.h"

namespace bulkhead::agent::collect {

std::vector<std::unique_ptr<Collector>> defaultCollectors() {
  std::vector<std::unique_ptr<Collector>> all;
  all.push_back(makeMetadataCollector());
  all.push_back(makeProcessCollector());
  all.push_back(makeOpenFilesCollector());
  all.push_back(makeSocketCollector());
  all.push_back(makeNetworkCollector());
  all.push_back(makeFirewallCollector());
  all.push_back(makeLoginCollector());
  all.push_back(makeKernelCollector());
  all.push_back(makeTempFilesCollector());
  all.push_back(makePersistenceCollector());
  return all;
}

}  // namespace bulkhead::agent::collect
