// Firewall collector: the live nftables ruleset of the agent's network namespace, as
// `nft -j list ruleset` prints it, read through libnftables. Read-only: one "list" command.
#include <fmt/format.h>
#include <nftables/libnftables.h>

#include <memory>
#include <string>

#include "agent/collect/collectors.h"
#include "agent/collect/host_files.h"

namespace bulkhead::agent::collect {
namespace {

struct CtxFree {
  void operator()(nft_ctx* c) const { nft_ctx_free(c); }
};

class FirewallCollector final : public Collector {
 public:
  std::string_view name() const override { return "firewall"; }

  absl::Status collect(const CollectContext&, ArtifactSink& sink) override {
    // A context of our own, created and used on this thread only.
    std::unique_ptr<nft_ctx, CtxFree> ctx(nft_ctx_new(NFT_CTX_DEFAULT));
    if (ctx == nullptr) return absl::InternalError("nft_ctx_new failed: cannot read nftables");
    if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0) {
      return absl::InternalError("cannot buffer libnftables output");
    }
    // JSON as `nft -j` prints it (with handles, counters and set elements: the state as is).
    nft_ctx_output_set_flags(ctx.get(), NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE);
    const int rc = nft_run_cmd_from_buffer(ctx.get(), "list ruleset");
    // Each getter resets its buffer: read each exactly once.
    const char* raw_out = nft_ctx_get_output_buffer(ctx.get());
    std::string out = raw_out != nullptr ? raw_out : "";
    const char* raw_err = nft_ctx_get_error_buffer(ctx.get());
    std::string err(trimBlanks(raw_err != nullptr ? raw_err : ""));
    if (rc != 0) {
      return absl::UnavailableError(fmt::format("nftables \"list ruleset\" failed: {}",
                                                err.empty() ? "no message from nft" : err));
    }
    if (!err.empty()) sink.warn(fmt::format("nftables: {}", err));
    if (!nlohmann::json::accept(out)) {
      sink.warn("nftables: the ruleset output is not valid JSON; written as it came");
    }
    if (!sink.file("artifacts/nftables.json", out)) {
      return absl::ResourceExhaustedError(fmt::format(
          "nftables ruleset ({} bytes) not written: size cap or time limit reached", out.size()));
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Collector> makeFirewallCollector() { return std::make_unique<FirewallCollector>(); }

}  // namespace bulkhead::agent::collect
