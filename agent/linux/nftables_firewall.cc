#include "agent/linux/nftables_firewall.h"

#include <nftables/libnftables.h>

#include <string>

#include "agent/linux/ruleset_hash.h"
#include "common/format.h"

namespace bulkhead::agent {
namespace {

std::string trimmed(const char* s) {
  std::string out = s == nullptr ? std::string() : std::string(s);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

constexpr const char* kStateUnchanged =
    "nothing was changed: the previous bulkhead table (or its absence) stays in force";

}  // namespace

std::string replacementBatch(const std::string& ruleset) {
  const std::string prefix = fmt::format("add table {0} {1}\ndelete table {0} {1}\n",
                                         NftablesFirewall::kFamily, NftablesFirewall::kTable);
  // The renderer (agent/core/ruleset.h) already emits the prefix; add it only when missing.
  std::string out = ruleset.compare(0, prefix.size(), prefix) == 0 ? std::string() : prefix;
  out += ruleset;
  if (!out.empty() && out.back() != '\n') out.push_back('\n');
  return out;
}

absl::StatusOr<std::unique_ptr<NftablesFirewall>> NftablesFirewall::create() {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) {
    return absl::InternalError("nft_ctx_new failed: cannot drive nftables (host left as it is)");
  }
  if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
    nft_ctx_free(ctx);
    return absl::InternalError("cannot buffer libnftables output (host left as it is)");
  }
  // Stateless: no counters, quotas or remaining timeouts; no handles (flag not set).
  nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_STATELESS);
  return std::unique_ptr<NftablesFirewall>(new NftablesFirewall(ctx));
}

NftablesFirewall::NftablesFirewall(nft_ctx* ctx) : ctx_(ctx) {}

NftablesFirewall::~NftablesFirewall() { nft_ctx_free(ctx_); }

absl::StatusOr<std::string> NftablesFirewall::runLocked(const std::string& buf, bool dry_run) {
  nft_ctx_set_dry_run(ctx_, dry_run);
  int rc = nft_run_cmd_from_buffer(ctx_, buf.c_str());
  // Copy both buffers at once: the next command overwrites them. Each getter call also resets
  // its buffer, so call it exactly once.
  const char* raw_out = nft_ctx_get_output_buffer(ctx_);
  std::string out = raw_out != nullptr ? raw_out : "";
  std::string err = trimmed(nft_ctx_get_error_buffer(ctx_));
  nft_ctx_set_dry_run(ctx_, false);
  if (rc != 0) {
    if (err.empty()) err = "nft failed without a message";
    return absl::InvalidArgumentError(err);
  }
  return out;
}

absl::Status NftablesFirewall::check(const std::string& ruleset) {
  std::lock_guard<std::mutex> lock(mu_);
  auto r = runLocked(replacementBatch(ruleset), /*dry_run=*/true);
  if (!r.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("ruleset failed the nftables check ({}): {}", kStateUnchanged, r.status()));
  }
  return absl::OkStatus();
}

absl::Status NftablesFirewall::apply(const std::string& ruleset) {
  std::lock_guard<std::mutex> lock(mu_);
  // No dry run first: one batch is one transaction, so a batch the kernel rejects leaves the
  // previous table exactly as it was (tests/kernel proves it). A kernel dry run ends in an
  // abort, which waits for an RCU grace period (10-15 ms here) and checks nothing more.
  const std::string batch = replacementBatch(ruleset);
  if (!table_present_) {
    // From nothing: `create table` fails when the table exists after all, and the whole
    // batch with it; then the replacement below runs. Not deleting a table inside the
    // transaction saves another grace period (isolating takes ~3 ms instead of ~15 ms).
    const std::string prefix = fmt::format("add table {0} {1}\ndelete table {0} {1}\n",
                                           kFamily, kTable);
    std::string create = fmt::format("create table {} {}\n", kFamily, kTable);
    create.append(batch, prefix.size(), std::string::npos);
    if (runLocked(create, /*dry_run=*/false).ok()) {
      table_present_ = true;
      return absl::OkStatus();
    }
  }
  if (auto r = runLocked(batch, /*dry_run=*/false); !r.ok()) {
    // One batch is one transaction: the kernel aborted all of it.
    return absl::InvalidArgumentError(fmt::format(
        "kernel rejected the ruleset transaction ({}): {}", kStateUnchanged, r.status()));
  }
  table_present_ = true;
  return absl::OkStatus();
}

absl::Status NftablesFirewall::update(const std::string& batch) {
  std::lock_guard<std::mutex> lock(mu_);
  // No dry run first, as in apply(): the batch is one transaction, all or nothing, and a dry
  // run would only add an abort's RCU grace period to every block change.
  if (auto r = runLocked(batch, /*dry_run=*/false); !r.ok()) {
    return absl::AbortedError(fmt::format("kernel rejected the update transaction ({}): {}",
                                          kStateUnchanged, r.status()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NftablesFirewall::readBack() {
  std::lock_guard<std::mutex> lock(mu_);
  auto r = runLocked(fmt::format("list table {} {}", kFamily, kTable), /*dry_run=*/false);
  if (!r.ok()) {
    if (r.status().message().find("No such file or directory") != absl::string_view::npos) {
      table_present_ = false;
      return absl::NotFoundError(
          fmt::format("table {} {} does not exist in the kernel (host is open)", kFamily, kTable));
    }
    return absl::InternalError(fmt::format(
        "cannot read table {} {} back (its state is unknown): {}", kFamily, kTable, r.status()));
  }
  table_present_ = true;
  return *std::move(r);
}

absl::StatusOr<std::string> NftablesFirewall::readBackHash() {
  auto text = readBack();
  if (!text.ok()) return text.status();
  return rulesetHash(*text);
}

absl::Status NftablesFirewall::remove() {
  std::lock_guard<std::mutex> lock(mu_);
  auto r =
      runLocked(fmt::format("add table {0} {1}\ndelete table {0} {1}\n", kFamily, kTable), false);
  if (!r.ok()) {
    return absl::InternalError(
        fmt::format("cannot remove table {} {} (it stays in force, host still contained): {}",
                    kFamily, kTable, r.status()));
  }
  table_present_ = false;
  return absl::OkStatus();
}

absl::StatusOr<std::string> NftablesFirewall::runRaw(const std::string& commands) {
  std::lock_guard<std::mutex> lock(mu_);
  return runLocked(commands, /*dry_run=*/false);
}

}  // namespace bulkhead::agent
