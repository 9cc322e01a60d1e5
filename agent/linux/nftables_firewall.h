// NftablesFirewall: the Firewall on libnftables, owning `table inet bulkhead`.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "agent/linux/firewall.h"

struct nft_ctx;

namespace bulkhead::agent {

// Thread-safety: owns one nft_ctx, which must be driven from one thread (libnftables makes no
// thread-safety promise). Callers use one NftablesFirewall from the agent's reconciler thread;
// an internal mutex additionally serialises calls so that a stray second caller cannot corrupt
// the context (it blocks instead). Operates on the network namespace of the calling thread at
// the time of each call.
//
// Library output and errors are buffered (never printed); error text is returned in Status.
// Every failure message says what state the host is left in.
class NftablesFirewall final : public Firewall {
 public:
  static constexpr const char* kFamily = "inet";
  static constexpr const char* kTable = "bulkhead";

  static absl::StatusOr<std::unique_ptr<NftablesFirewall>> create();
  ~NftablesFirewall() override;
  NftablesFirewall(const NftablesFirewall&) = delete;
  NftablesFirewall& operator=(const NftablesFirewall&) = delete;

  // nft -c of `ruleset` exactly as apply() would run it (with the replacement prefix).
  absl::Status check(const std::string& ruleset) override;
  // Runs `add table inet bulkhead; delete table inet bulkhead;` + `ruleset` as ONE batch, after
  // a dry-run check: the new table replaces the old one atomically, or nothing changes.
  // `ruleset` is the table body (`table inet bulkhead { ... }`, one statement per line); it
  // may itself start with the add/delete pair (harmless when repeated).
  absl::Status apply(const std::string& ruleset) override;
  // `list table inet bulkhead` with NFT_CTX_OUTPUT_STATELESS (no counters, no `expires`) and
  // without handles: identical for identical applies. NotFound if the table does not exist.
  absl::StatusOr<std::string> readBack() override;
  // add-then-delete in one batch: an absent table is not an error.
  absl::Status remove() override;
  // Runs `batch` unchanged (no table rebuild) as one atomic transaction (no separate dry run:
  // the kernel rejects a bad batch as a whole).
  absl::Status update(const std::string& batch) override;

  // SHA-256 hex of readBack(); NotFound if the table does not exist.
  absl::StatusOr<std::string> readBackHash();

  // Runs arbitrary nft commands in this context (tests and diagnostics; e.g. `list ruleset`).
  // Returns the buffered output. Not for enforcement: no dry-run first.
  absl::StatusOr<std::string> runRaw(const std::string& commands);

 private:
  explicit NftablesFirewall(nft_ctx* ctx);
  // REQUIRES: mu_ held. Runs `buf`; on failure returns the error buffer's text.
  absl::StatusOr<std::string> runLocked(const std::string& buf, bool dry_run);

  std::mutex mu_;
  nft_ctx* ctx_;  // owned; GUARDED_BY(mu_)
  // What the last apply/remove/readBack saw; only picks apply()'s fast path, never decides
  // correctness. Starts true (the safe, slower path). GUARDED_BY(mu_)
  bool table_present_ = true;
};

// The batch apply()/check() run: `ruleset` preceded by `add table inet bulkhead` / `delete
// table inet bulkhead` unless it already starts with exactly those two lines (as the renderer's
// output does). Exposed for tests and --dry-run printing.
std::string replacementBatch(const std::string& ruleset);

}  // namespace bulkhead::agent
