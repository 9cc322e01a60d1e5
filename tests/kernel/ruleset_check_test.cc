// Feeds rendered rulesets to the real kernel through libnftables: every golden file in
// tests/unit/agent/testdata/*.nft in dry-run mode (nft -c), then for real, plus a few hundred
// random states with overlapping exemptions applied for real (interval-set overlap errors only
// show up when the kernel inserts the elements). Runs only inside the private network
// namespace that private_netns_main.cc creates; skips when not root.
#include <gtest/gtest.h>
#include <nftables/libnftables.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "agent/core/ruleset.h"
#include "common/format.h"
#include "tests/kernel/private_netns.h"

namespace bulkhead::agent {
namespace {

namespace v1 = bulkhead::v1;

class Nft {
 public:
  Nft() : ctx_(nft_ctx_new(NFT_CTX_DEFAULT)) {
    nft_ctx_buffer_output(ctx_);
    nft_ctx_buffer_error(ctx_);
  }
  ~Nft() { nft_ctx_free(ctx_); }
  Nft(const Nft&) = delete;
  Nft& operator=(const Nft&) = delete;

  // Empty on success, else libnftables' error text.
  std::string run(const std::string& text, bool dry_run) {
    nft_ctx_set_dry_run(ctx_, dry_run);
    int rc = nft_run_cmd_from_buffer(ctx_, text.c_str());
    std::string err = nft_ctx_get_error_buffer(ctx_);
    if (rc == 0) return "";
    return err.empty() ? "failed without a message" : err;
  }

  std::string output(const std::string& cmd) {
    nft_ctx_set_dry_run(ctx_, false);
    if (nft_run_cmd_from_buffer(ctx_, cmd.c_str()) != 0) return "";
    return nft_ctx_get_output_buffer(ctx_);
  }

 private:
  nft_ctx* ctx_;
};

std::vector<std::filesystem::path> goldenFiles() {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(BULKHEAD_RULESET_TESTDATA)) {
    if (e.path().extension() == ".nft") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string readFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(RulesetKernelCheck, GoldenRulesetsAreValidNft) {
  BULKHEAD_REQUIRE_PRIVATE_NETNS();
  auto files = goldenFiles();
  ASSERT_GE(files.size(), 4u) << "golden files missing in " << BULKHEAD_RULESET_TESTDATA;
  Nft nft;
  for (const auto& f : files) {
    const std::string text = readFile(f);
    EXPECT_EQ(nft.run(text, /*dry_run=*/true), "") << f;
    // Our own netns: apply for real too (twice: the batch must also replace an existing table).
    EXPECT_EQ(nft.run(text, false), "") << f;
    EXPECT_EQ(nft.run(text, false), "") << f;
    std::string listed = nft.output("list table inet bulkhead");
    EXPECT_NE(listed.find("chain input"), std::string::npos) << f << "\n" << listed;
    EXPECT_NE(listed.find("priority raw - 10"), std::string::npos) << f << ": -310 is raw - 10\n"
                                                                   << listed;
  }
}

TEST(RulesetKernelCheck, BrokenBatchIsRejectedAndKeepsTheOldTable) {
  BULKHEAD_REQUIRE_PRIVATE_NETNS();
  Nft nft;
  v1::DesiredState s;
  auto* ep = s.add_controller_endpoints();
  ep->set_ip("10.77.0.1");
  ep->set_port(7443);
  s.mutable_isolation()->set_enabled(true);
  const std::string good = renderRuleset(s, 0);
  ASSERT_EQ(nft.run(good, false), "");
  const std::string before = nft.output("list table inet bulkhead");
  std::string broken = good;
  broken.replace(broken.find("chain forward"), 13, "chain fwd");  // `fwd` is a keyword
  EXPECT_NE(nft.run(broken, true), "");
  EXPECT_NE(nft.run(broken, false), "");
  EXPECT_EQ(nft.output("list table inet bulkhead"), before);
}

// Random states concentrated on few addresses and ports, so exemptions overlap a lot.
TEST(RulesetKernelCheck, RandomOverlappingStatesApply) {
  BULKHEAD_REQUIRE_PRIVATE_NETNS();
  Nft nft;
  std::mt19937 gen(4242);
  auto upTo = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen); };
  for (int iter = 0; iter < 200; ++iter) {
    v1::DesiredState s;
    for (int i = 0; i < 1 + upTo(4); ++i) {
      auto* ep = s.add_controller_endpoints();
      ep->set_ip(upTo(2) ? fmt::format("10.77.0.{}", upTo(8)) : fmt::format("fd77::{}", upTo(8)));
      ep->set_port(7443 + static_cast<uint32_t>(upTo(2)));
    }
    s.mutable_isolation()->set_enabled(upTo(5) != 0);
    for (int i = 0; i < upTo(30); ++i) {
      v1::ExemptionRule* r = s.mutable_isolation()->add_exemptions();
      r->set_direction(static_cast<v1::Direction>(1 + upTo(3)));
      r->set_protocol(static_cast<v1::Protocol>(upTo(4)));
      bool v6 = upTo(2) == 1;
      int prefix = v6 ? std::vector<int>{0, 16, 120, 126, 128}[upTo(5)]
                      : std::vector<int>{0, 16, 24, 29, 30, 32}[upTo(6)];
      int host_bits = (v6 ? 128 : 32) - prefix;
      unsigned last =
          host_bits >= 3 ? 0u : (static_cast<unsigned>(upTo(8)) >> host_bits) << host_bits;
      if (prefix == 0) {
        r->set_remote_cidr(v6 ? "::/0" : "0.0.0.0/0");
      } else {
        r->set_remote_cidr(v6 ? fmt::format("fd77::{:x}/{}", last, prefix)
                              : fmt::format("10.77.0.{}/{}", last, prefix));
      }
      if (r->protocol() != v1::PROTOCOL_ICMP && upTo(3) != 0) {
        uint32_t lo = 5430 + static_cast<uint32_t>(upTo(6));
        r->mutable_ports()->set_first(lo);
        r->mutable_ports()->set_last(lo + static_cast<uint32_t>(upTo(4)));
      }
    }
    if (upTo(3) == 0) s.add_protected_cidrs(upTo(2) ? "10.77.0.0/29" : "fd77::/120");
    ASSERT_TRUE(validateDesiredState(s).ok()) << validateDesiredState(s) << "\n" << s.DebugString();
    const std::string text = renderRuleset(s, 0);
    ASSERT_EQ(nft.run(text, true), "") << "iteration " << iter << "\n" << text;
    ASSERT_EQ(nft.run(text, false), "") << "iteration " << iter << "\n" << text;
  }
}

}  // namespace
}  // namespace bulkhead::agent
