// controller/webhook/formats: a webhook body from the network. The first byte picks the
// format (Alertmanager, Falcosidekick, generic with a fixed mapping); whatever the rest, decode
// either fails INVALID_ARGUMENT with a one-line message, or gives signals that each pass
// validateSignal and carry the integration's name.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "controller/playbook/engine.h"
#include "controller/webhook/formats.h"

namespace {

using namespace bulkhead::controller;

const webhook::FormatConfig& configFor(uint8_t pick) {
  static const webhook::FormatConfig configs[] = {
      *webhook::parseFormatConfig(webhook::Format::kAlertmanager, ""),
      *webhook::parseFormatConfig(webhook::Format::kFalco, ""),
      *webhook::parseFormatConfig(
          webhook::Format::kGeneric,
          R"({"items":"/alerts","rule":"rule","severity":"sev","addresses":"ips",
              "host":"a.b.0","idempotency_key":"id","resolved":"r","ttl_seconds":"ttl",
              "labels":{"x":"/x/y"}})"),
  };
  return configs[pick % 3];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const webhook::FormatConfig& config = configFor(data[0]);
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto signals = webhook::decode(config, "fuzz", body);
  if (!signals.ok()) {
    if (!absl::IsInvalidArgument(signals.status())) std::abort();
    if (signals.status().message().empty()) std::abort();
    if (signals.status().message().find('\n') != std::string_view::npos) std::abort();
    return 0;
  }
  if (signals->empty() || signals->size() > webhook::kMaxSignalsPerRequest) std::abort();
  for (const auto& s : *signals) {
    if (!validateSignal(s).ok() || s.integration() != "fuzz") std::abort();
  }
  return 0;
}
