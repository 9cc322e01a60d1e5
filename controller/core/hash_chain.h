// Hash chains over records, as the audit trail and every evidence bundle's custody record keep
// them. A link's hash is SHA-256 (lower-case hex) over the previous link's hash and the
// record's canonical bytes, each length-prefixed (ChainRecord); the first link's previous hash
// is the chain's genesis value. A keyed chain also gives every link a MAC, HMAC-SHA256 (hex)
// under the key of the link's hash; since the hash covers the previous hash, one link's MAC
// vouches for every link before it. Pure: no I/O, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace bulkhead::controller {

// A record's canonical bytes: its fields in a fixed order, each as "<byte length>:<bytes>;",
// so that no two different sequences of fields encode alike.
class ChainRecord {
 public:
  ChainRecord& add(std::string_view field);
  ChainRecord& add(int64_t field);  // as decimal text
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// SHA-256 (hex) over `prev_hash` encoded as a field, followed by `record` (ChainRecord bytes).
std::string chainLinkHash(std::string_view prev_hash, std::string_view record);

// HMAC-SHA256 (hex) of a link's hash under `key`.
std::string chainLinkMac(std::string_view key, std::string_view hash);

struct ChainLink {
  std::string prev_hash;
  std::string hash;
  std::string mac;  // "" when the key is empty
};

// The link that follows `prev_hash` for `record`; with a non-empty `key`, with its MAC.
ChainLink nextChainLink(std::string_view prev_hash, std::string_view record, std::string_view key);

// A link as stored, to be verified. `record` is the canonical bytes recomputed from the
// stored fields; `id` names the link in problems (the row id).
struct StoredLink {
  int64_t id = 0;
  std::string record;
  std::string prev_hash;
  std::string hash;
  std::string mac;
};

// The words a problem uses for one chain: "prev_hash does not match <item> 4 (<item>s removed
// or altered)", "prev_hash is not <start> (...)".
struct ChainWording {
  std::string item = "row";
  std::string start = "the chain start";
  std::string container = "table";  // what holds the chain, for a truncated tail
  // What else a MAC that does not match can mean: "MAC does not match (<item> altered and
  // hashes recomputed, or <other_key>)".
  std::string other_key = "another key wrote it";
};

// The last link of an earlier view of the chain: the chain must still hold link `id` with
// this hash, else links were removed or replaced at the tail.
struct ChainCheckpoint {
  int64_t id = 0;
  std::string hash;
};

struct ChainVerification {
  bool ok = true;
  int64_t links = 0;  // links checked, the first bad one included
  // When !ok: the position of the link at fault in the sequence (the sequence's length when
  // links are missing at the tail).
  size_t first_bad_index = 0;
  int64_t first_bad_id = 0;   // 0 when ok
  std::string problem;        // what is wrong with the first bad link
  int64_t unkeyed_links = 0;  // keyed chains: links before the first one with a MAC
  int64_t last_id = 0;        // after a complete walk: the last link, and its hash
  std::string last_hash;
};

// Walks a chain link by link and stops at the first that does not hold: its prev_hash is not
// the previous link's hash (the genesis value for the first), its hash is not
// chainLinkHash(prev_hash, record), or, with a key, its MAC is wrong or missing once a link
// carried one. A keyed chain may begin with links without a MAC (written before keyed
// chaining started) but must end in one that has a MAC. Feed the links in order with add(),
// then call finish() once.
class ChainVerifier {
 public:
  // `key` empty: MACs are not checked.
  ChainVerifier(std::string genesis, std::string key, ChainWording wording,
                std::optional<ChainCheckpoint> checkpoint = std::nullopt);

  // Checks the next link; false once a link failed (add() then ignores further links).
  bool add(const StoredLink& link);
  // The outcome: the first failure, or the chain-wide rules (a keyed chain carries a MAC, the
  // checkpoint's link is there with its hash).
  ChainVerification finish();

 private:
  bool fail(size_t index, int64_t id, std::string problem);

  const std::string key_;
  const ChainWording wording_;
  const std::optional<ChainCheckpoint> checkpoint_;
  ChainVerification v_;
  std::string prev_hash_;
  int64_t prev_id_ = 0;
  std::optional<int64_t> first_keyed_id_;       // the first link with a MAC, once seen
  std::optional<std::string> checkpoint_hash_;  // the hash of link checkpoint_->id, once seen
};

// Verifies a whole chain held in memory (ChainVerifier over `links`).
ChainVerification verifyChain(std::span<const StoredLink> links, std::string genesis,
                              std::string key, ChainWording wording,
                              std::optional<ChainCheckpoint> checkpoint = std::nullopt);

}  // namespace bulkhead::controller
