// Block-set benchmark (a program, not a test), root only: in a private network namespace of
// its own, fills the block sets with --base addresses (fd77::/16 host addresses, one block
// each), then measures incremental additions through NftablesFirewall::update() (the agent's
// path: blockUpdateBatch of element add batches) at several batch sizes, and the deletion of
// a batch. Prints elements per second.
//
//   sudo build/bench/bulkhead-block-bench [--base 100000] [--rounds 5]
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "agent/core/blocks.h"
#include "agent/core/ruleset.h"
#include "agent/linux/nftables_firewall.h"
#include "common/format.h"

namespace {

namespace v1 = bulkhead::v1;
using Clock = std::chrono::steady_clock;

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// fd77:<group>::<hi>:<lo>, a distinct lab address per (group, n).
std::string addr(int group, int n) {
  return fmt::format("fd77:{:x}::{:x}:{:x}", group, n >> 16, n & 0xffff);
}

void addBlock(v1::DesiredState& s, const std::string& a, int64_t expires) {
  auto* b = s.add_blocks();
  b->set_remote_cidr(a);
  b->set_direction(v1::DIRECTION_IN);
  b->set_expires_at_unix_ms(expires);
}

}  // namespace

int main(int argc, char** argv) {
  int base = 100000;
  int rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--base") base = std::atoi(argv[i + 1]);
    else if (flag == "--rounds") rounds = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--base N] [--rounds N]\n", argv[0]);
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "bulkhead-block-bench: needs root (it works in a private netns)\n");
    return 2;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return 1;
  }
  auto fw = bulkhead::agent::NftablesFirewall::create();
  if (!fw.ok()) {
    std::fprintf(stderr, "%s\n", std::string(fw.status().message()).c_str());
    return 1;
  }
  const int64_t expires = nowMs() + 3'600'000;   // 1 h timeouts, as bans usually have
  v1::DesiredState state;
  for (int i = 0; i < base; ++i) addBlock(state, addr(1, i), expires);
  auto t0 = Clock::now();
  const std::string text = bulkhead::agent::renderRuleset(state, nowMs());
  const double render_ms = msSince(t0);
  t0 = Clock::now();
  if (auto s = (*fw)->apply(text); !s.ok()) {
    std::fprintf(stderr, "apply: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  const double apply_ms = msSince(t0);
  std::printf("table with %d blocked addresses: render %.0f ms, apply (one transaction) %.0f ms\n",
              base, render_ms, apply_ms);

  int group = 2;
  for (int batch : {1, 10, 100, 1000, 10000}) {
    double total_ms = 0, diff_ms = 0, elems_ms = 0;
    int elements = 0;
    for (int r = 0; r < rounds; ++r, ++group) {
      v1::DesiredState next = state;
      for (int i = 0; i < batch; ++i) addBlock(next, addr(group, i), expires);
      const int64_t now = nowMs();
      auto before = bulkhead::agent::blockElements(state, now);
      auto te = Clock::now();
      auto after = bulkhead::agent::blockElements(next, now);
      elems_ms += msSince(te);   // the agent computes this once per change
      auto t = Clock::now();
      auto b = bulkhead::agent::blockUpdateBatch(before, after, now);
      diff_ms += msSince(t);
      if (!b || b->empty()) {
        std::fprintf(stderr, "no incremental batch\n");
        return 1;
      }
      if (auto s = (*fw)->update(*b); !s.ok()) {
        std::fprintf(stderr, "update: %s\n", std::string(s.message()).c_str());
        return 1;
      }
      total_ms += msSince(t);
      elements += batch;
      state = std::move(next);
    }
    std::printf("add %5d per batch (diff + update, %d rounds, %zu in place at the end): "
                "%.2f ms per batch (diff %.2f ms), %.0f elements/s; with the agent's element "
                "computation (+%.1f ms): %.0f elements/s\n",
                batch, rounds, static_cast<size_t>(state.blocks_size()), total_ms / rounds,
                diff_ms / rounds, elements / (total_ms / 1000.0), elems_ms / rounds,
                elements / ((total_ms + elems_ms) / 1000.0));
  }
  // Deleting the last 1,000 added.
  {
    v1::DesiredState next = state;
    for (int i = 0; i < 1000; ++i) next.mutable_blocks()->RemoveLast();
    const int64_t now = nowMs();
    auto t = Clock::now();
    auto b = bulkhead::agent::blockUpdateBatch(bulkhead::agent::blockElements(state, now),
                                               bulkhead::agent::blockElements(next, now), now);
    if (!b || !(*fw)->update(*b).ok()) {
      std::fprintf(stderr, "delete batch failed\n");
      return 1;
    }
    std::printf("delete 1000 in one batch: %.2f ms\n", msSince(t));
  }
  (void)(*fw)->remove();
  return 0;
}
