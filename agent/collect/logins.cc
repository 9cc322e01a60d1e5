// PLACEHOLDER (lead): replaced by the engineer who owns this collector.
#include "agent/collect/collectors.h"

namespace bulkhead::agent::collect {
namespace {
class Placeholder final : public Collector {
 public:
  std::string_view name() const override { return "logins"; }
  absl::Status collect(const CollectContext&, ArtifactSink&) override {
    return absl::UnimplementedError("logins collector not built yet");
  }
};
}  // namespace

std::unique_ptr<Collector> makeLoginCollector() { return std::make_unique<Placeholder>(); }

}  // namespace bulkhead::agent::collect
