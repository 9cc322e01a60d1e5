#include "controller/core/hash_chain.h"

#include <utility>

#include "common/format.h"
#include "evidence/hash.h"

namespace bulkhead::controller {

ChainRecord& ChainRecord::add(std::string_view field) {
  bytes_ += fmt::format("{}:", field.size());
  bytes_ += field;
  bytes_ += ';';
  return *this;
}

ChainRecord& ChainRecord::add(int64_t field) { return add(std::to_string(field)); }

std::string chainLinkHash(std::string_view prev_hash, std::string_view record) {
  std::string bytes = ChainRecord().add(prev_hash).bytes();
  bytes += record;
  return evidence::sha256Hex(bytes);
}

std::string chainLinkMac(std::string_view key, std::string_view hash) {
  return evidence::hmacSha256Hex(key, hash);
}

ChainLink nextChainLink(std::string_view prev_hash, std::string_view record, std::string_view key) {
  ChainLink link{.prev_hash = std::string(prev_hash), .hash = chainLinkHash(prev_hash, record)};
  if (!key.empty()) link.mac = chainLinkMac(key, link.hash);
  return link;
}

ChainVerifier::ChainVerifier(std::string genesis, std::string key, ChainWording wording,
                             std::optional<ChainCheckpoint> checkpoint)
    : key_(std::move(key)),
      wording_(std::move(wording)),
      checkpoint_(std::move(checkpoint)),
      prev_hash_(std::move(genesis)) {}

bool ChainVerifier::fail(size_t index, int64_t id, std::string problem) {
  v_.ok = false;
  v_.first_bad_index = index;
  v_.first_bad_id = id;
  v_.problem = std::move(problem);
  return false;
}

bool ChainVerifier::add(const StoredLink& link) {
  if (!v_.ok) return false;
  const std::string& item = wording_.item;
  const auto index = static_cast<size_t>(v_.links);
  ++v_.links;
  if (link.prev_hash != prev_hash_) {
    return fail(index, link.id,
                v_.links == 1
                    ? fmt::format("prev_hash is not {} (earlier {}s removed or {} altered)",
                                  wording_.start, item, item)
                    : fmt::format("prev_hash does not match {} {} ({}s removed or altered)", item,
                                  prev_id_, item));
  }
  if (chainLinkHash(link.prev_hash, link.record) != link.hash) {
    return fail(index, link.id,
                fmt::format("hash does not match the {}'s contents ({} altered)", item, item));
  }
  if (!key_.empty()) {
    if (link.mac.empty() && first_keyed_id_) {
      return fail(index, link.id,
                  fmt::format("{} has no MAC although keyed chaining started at {} {} "
                              "(MAC removed: {} altered)",
                              item, item, *first_keyed_id_, item));
    }
    if (!link.mac.empty() && chainLinkMac(key_, link.hash) != link.mac) {
      return fail(index, link.id,
                  fmt::format("MAC does not match ({} altered and hashes recomputed, or {})", item,
                              wording_.other_key));
    }
    if (link.mac.empty()) {
      ++v_.unkeyed_links;
    } else if (!first_keyed_id_) {
      first_keyed_id_ = link.id;
    }
  }
  if (checkpoint_ && link.id == checkpoint_->id) checkpoint_hash_ = link.hash;
  prev_hash_ = link.hash;
  prev_id_ = link.id;
  return true;
}

ChainVerification ChainVerifier::finish() {
  if (!v_.ok) return v_;
  const auto end = static_cast<size_t>(v_.links);
  v_.last_id = prev_id_;
  v_.last_hash = v_.links == 0 ? std::string() : prev_hash_;
  const std::string& item = wording_.item;
  if (!key_.empty() && v_.links > 0 && !first_keyed_id_) {
    fail(end - 1, prev_id_,
         fmt::format("no {} carries a MAC: the keyed part of the chain was removed "
                     "({}s deleted, or MACs stripped)",
                     item, item));
    return v_;
  }
  if (checkpoint_ && !checkpoint_hash_) {
    fail(end, checkpoint_->id,
         fmt::format("{}s missing at the tail: the checkpoint ends at {} {} but the {} ends at "
                     "{} {}",
                     item, item, checkpoint_->id, wording_.container, item, prev_id_));
  } else if (checkpoint_ && *checkpoint_hash_ != checkpoint_->hash) {
    fail(end, checkpoint_->id,
         fmt::format("{} {} differs from the checkpoint (hash {} there, {} here): {}s replaced "
                     "at the tail",
                     item, checkpoint_->id, checkpoint_->hash, *checkpoint_hash_, item));
  }
  return v_;
}

ChainVerification verifyChain(std::span<const StoredLink> links, std::string genesis,
                              std::string key, ChainWording wording,
                              std::optional<ChainCheckpoint> checkpoint) {
  ChainVerifier verifier(std::move(genesis), std::move(key), std::move(wording),
                         std::move(checkpoint));
  for (const StoredLink& link : links) {
    if (!verifier.add(link)) break;
  }
  return verifier.finish();
}

}  // namespace bulkhead::controller
