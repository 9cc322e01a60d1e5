// The hash chain: the record encoding and link hash pinned to the values stored databases
// hold, and verification finding a changed, removed or inserted record, a wrong or stripped
// MAC, and a truncated tail.
#include "controller/core/hash_chain.h"

#include <gtest/gtest.h>

#include <vector>

namespace bulkhead::controller {
namespace {

const std::string kGenesis(64, '0');
const std::string kKey(32, '\x11');

// The first audit row of ChainFormatTest (chain_format_test.cc), whose stored hash and MAC
// were pinned from the store before the chain moved here.
std::string firstAuditRecord() {
  return ChainRecord()
      .add(int64_t{1})
      .add(int64_t{1700000000001})
      .add("alice")
      .add("isolate")
      .add("web-01")
      .add("INC-42")
      .add("ok")
      .add("generation 3")
      .bytes();
}

// A chain of `n` records ("record 1", ...), links numbered from 1, MACs under `key` if given.
std::vector<StoredLink> chain(int n, const std::string& key = "") {
  std::vector<StoredLink> links;
  std::string prev = kGenesis;
  for (int i = 1; i <= n; ++i) {
    StoredLink l{.id = i, .record = ChainRecord().add("record " + std::to_string(i)).bytes()};
    ChainLink next = nextChainLink(prev, l.record, key);
    l.prev_hash = next.prev_hash;
    l.hash = next.hash;
    l.mac = next.mac;
    prev = l.hash;
    links.push_back(std::move(l));
  }
  return links;
}

ChainVerification verify(const std::vector<StoredLink>& links, const std::string& key = "",
                         std::optional<ChainCheckpoint> checkpoint = std::nullopt) {
  return verifyChain(links, kGenesis, key, ChainWording{}, std::move(checkpoint));
}

TEST(HashChainTest, RecordFieldsAreLengthPrefixed) {
  EXPECT_EQ(ChainRecord().add("abc").add(int64_t{-5}).add("").add("3:a;").bytes(),
            "3:abc;2:-5;0:;4:3:a;;");
  EXPECT_EQ(ChainRecord().add(std::string("\0x", 2)).bytes(), std::string("2:\0x;", 5));
}

TEST(HashChainTest, LinkHashAndMacMatchTheStoredFormat) {
  ChainLink link = nextChainLink(kGenesis, firstAuditRecord(), kKey);
  EXPECT_EQ(link.prev_hash, kGenesis);
  EXPECT_EQ(link.hash, "1e75e234f211d7f4663bfeae4f63a881cefc88718fedb52381c5a53d0e4ba5d7");
  EXPECT_EQ(link.mac, "3ded7857d87c907f8ccce65213a22023363820780766d0d001b90355d8d2c716");
  EXPECT_EQ(link.hash, chainLinkHash(kGenesis, firstAuditRecord()));
  EXPECT_EQ(link.mac, chainLinkMac(kKey, link.hash));
  EXPECT_EQ(nextChainLink(kGenesis, firstAuditRecord(), "").mac, "");
  // A custody chain starts at its evidence id (ChainFormatTest's first event).
  const std::string evidence_id(64, 'e');
  EXPECT_EQ(chainLinkHash(evidence_id, ChainRecord()
                                           .add(evidence_id)
                                           .add(int64_t{1000})
                                           .add("alice")
                                           .add("requested")
                                           .add("INC-42")
                                           .bytes()),
            "beaa30d9de96eb6f2feb0cacd19fe6047628d1364997a958996db87fc88d9641");
}

TEST(HashChainTest, AnIntactChainVerifies) {
  auto v = verify(chain(4));
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.links, 4);
  EXPECT_EQ(v.first_bad_id, 0);
  EXPECT_EQ(v.last_id, 4);
  EXPECT_EQ(v.last_hash, chain(4).back().hash);
  auto empty = verify({});
  EXPECT_TRUE(empty.ok);
  EXPECT_EQ(empty.last_id, 0);
  EXPECT_EQ(empty.last_hash, "");
}

TEST(HashChainTest, AChangedRecordIsFound) {
  auto links = chain(4);
  links[2].record = ChainRecord().add("record 3, edited").bytes();
  auto v = verify(links);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 2u);
  EXPECT_EQ(v.first_bad_id, 3);
  EXPECT_EQ(v.links, 3);
  EXPECT_EQ(v.problem, "hash does not match the row's contents (row altered)");
  EXPECT_EQ(v.last_id, 0);  // the walk did not complete
}

TEST(HashChainTest, AChangedRecordWithItsHashRecomputedBreaksTheNextLink) {
  auto links = chain(4);
  links[1].record = ChainRecord().add("record 2, edited").bytes();
  links[1].hash = chainLinkHash(links[1].prev_hash, links[1].record);
  auto v = verify(links);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_id, 3);
  EXPECT_EQ(v.problem, "prev_hash does not match row 2 (rows removed or altered)");
}

TEST(HashChainTest, ARemovedRecordIsFound) {
  auto links = chain(4);
  links.erase(links.begin() + 1);
  auto v = verify(links);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 1u);
  EXPECT_EQ(v.first_bad_id, 3);
  EXPECT_EQ(v.problem, "prev_hash does not match row 1 (rows removed or altered)");

  links = chain(4);
  links.erase(links.begin());
  v = verify(links);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_id, 2);
  EXPECT_EQ(v.problem, "prev_hash is not the chain start (earlier rows removed or row altered)");
}

TEST(HashChainTest, AnInsertedRecordIsFound) {
  auto links = chain(4);
  // Linked to its predecessor and hashed correctly, but the next link still names the
  // predecessor.
  StoredLink forged{.id = 99, .record = ChainRecord().add("forged").bytes()};
  forged.prev_hash = links[1].hash;
  forged.hash = chainLinkHash(forged.prev_hash, forged.record);
  links.insert(links.begin() + 2, forged);
  auto v = verify(links);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 3u);
  EXPECT_EQ(v.first_bad_id, 3);
  EXPECT_EQ(v.problem, "prev_hash does not match row 99 (rows removed or altered)");
}

TEST(HashChainTest, VerificationStopsAtTheFirstBadLink) {
  auto links = chain(5);
  links[1].record = "x";
  links[3].record = "y";
  ChainVerifier verifier(kGenesis, "", ChainWording{});
  EXPECT_TRUE(verifier.add(links[0]));
  EXPECT_FALSE(verifier.add(links[1]));
  EXPECT_FALSE(verifier.add(links[2]));  // ignored
  auto v = verifier.finish();
  EXPECT_EQ(v.first_bad_id, 2);
  EXPECT_EQ(v.links, 2);
}

TEST(HashChainTest, KeyedChainsCheckEveryMac) {
  auto links = chain(4, kKey);
  EXPECT_TRUE(verify(links, kKey).ok);
  EXPECT_TRUE(verify(links).ok);  // without the key only the hashes are checked

  auto edited = links;
  edited[1].mac = chainLinkMac(std::string(32, '\x22'), edited[1].hash);
  auto v = verify(edited, kKey);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_id, 2);
  EXPECT_EQ(v.problem,
            "MAC does not match (row altered and hashes recomputed, or another key wrote it)");

  auto stripped = links;
  stripped[2].mac.clear();
  v = verify(stripped, kKey);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_id, 3);
  EXPECT_EQ(v.problem,
            "row has no MAC although keyed chaining started at row 1 (MAC removed: row altered)");

  for (auto& l : stripped) l.mac.clear();
  v = verify(stripped, kKey);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 3u);
  EXPECT_EQ(v.first_bad_id, 4);
  EXPECT_EQ(v.last_id, 4);
  EXPECT_NE(v.problem.find("no row carries a MAC"), std::string::npos) << v.problem;
}

TEST(HashChainTest, AKeyedChainMayStartWithUnkeyedLinks) {
  auto links = chain(2);
  std::string prev = links.back().hash;
  for (int i = 3; i <= 4; ++i) {
    StoredLink l{.id = i, .record = ChainRecord().add("keyed").bytes()};
    ChainLink next = nextChainLink(prev, l.record, kKey);
    l.prev_hash = next.prev_hash;
    l.hash = next.hash;
    l.mac = next.mac;
    prev = l.hash;
    links.push_back(l);
  }
  auto v = verify(links, kKey);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.unkeyed_links, 2);
  EXPECT_EQ(verify(links).unkeyed_links, 0);  // counted only when MACs are checked
}

TEST(HashChainTest, ACheckpointFindsATruncatedOrReplacedTail) {
  auto links = chain(6);
  const ChainCheckpoint checkpoint{6, links.back().hash};
  EXPECT_TRUE(verify(links, "", checkpoint).ok);

  links.resize(4);
  EXPECT_TRUE(verify(links).ok);  // a shorter chain is still a chain
  auto v = verify(links, "", checkpoint);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_index, 4u);
  EXPECT_EQ(v.first_bad_id, 6);
  EXPECT_EQ(v.problem,
            "rows missing at the tail: the checkpoint ends at row 6 but the table ends at row 4");

  auto replaced = chain(7);
  replaced[5].record = ChainRecord().add("other").bytes();
  replaced[5].hash = chainLinkHash(replaced[5].prev_hash, replaced[5].record);
  replaced[6].prev_hash = replaced[5].hash;
  replaced[6].hash = chainLinkHash(replaced[6].prev_hash, replaced[6].record);
  v = verify(replaced, "", checkpoint);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_id, 6);
  EXPECT_NE(v.problem.find("row 6 differs from the checkpoint"), std::string::npos) << v.problem;
}

TEST(HashChainTest, ProblemsUseTheChainsWords) {
  auto links = chain(3);
  links.erase(links.begin());
  ChainWording custody{.item = "event", .start = "the evidence id"};
  auto v = verifyChain(links, kGenesis, "", custody);
  EXPECT_EQ(v.problem,
            "prev_hash is not the evidence id (earlier events removed or event altered)");
}

}  // namespace
}  // namespace bulkhead::controller
