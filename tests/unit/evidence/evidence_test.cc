// evidence/signing and evidence/bundle: signatures and signer checks, writing a bundle and
// verifying it (fresh, one byte flipped, one member changed/added/removed, large members),
// readMember; stock tools (tar, openssl) open what the writer produced.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstring>
#include <fstream>
#include <map>
#include <random>

#include "evidence/bundle.h"
#include "evidence/hash.h"
#include "evidence/signing.h"
#include "tests/unit/evidence/evidence_testing.h"

namespace bulkhead::evidence {
namespace {

using testing::Pki;
using testing::readFile;
using testing::sh;
using testing::TempDir;
using testing::writeFile;

TEST(Signing, RoundTrip) {
  Signer signer = Pki::signer();
  auto sig = signer.sign("manifest bytes");
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_TRUE(checkSignature(Pki::get().agent.cert_pem, "manifest bytes", *sig).ok());
  EXPECT_FALSE(checkSignature(Pki::get().agent.cert_pem, "manifest bytez", *sig).ok());
  std::string bad = *sig;
  bad[bad.size() / 2] ^= 1;
  EXPECT_FALSE(checkSignature(Pki::get().agent.cert_pem, "manifest bytes", bad).ok());
  EXPECT_TRUE(checkSigner(signer.certPem(), Pki::get().ca.cert_pem, "web-03").ok());
  EXPECT_EQ(signer.certPem(), Pki::get().agent.cert_pem);
}

TEST(Signing, KeyMustMatchCertificate) {
  CertRequest req;
  req.name = "other";
  auto other = issueCert(Pki::get().ca, req);
  ASSERT_TRUE(other.ok());
  auto s = Signer::fromPem(other->key_pem, Pki::get().agent.cert_pem);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("does not match"), std::string::npos) << s.status();
  EXPECT_FALSE(Signer::fromPem("junk", Pki::get().agent.cert_pem).ok());
  EXPECT_FALSE(Signer::fromPem(Pki::get().agent.key_pem, "junk").ok());
  // A signature by another key does not check against the agent's certificate.
  auto other_signer = Signer::fromPem(other->key_pem, other->cert_pem);
  ASSERT_TRUE(other_signer.ok());
  auto sig = other_signer->sign("data");
  ASSERT_TRUE(sig.ok());
  EXPECT_FALSE(checkSignature(Pki::get().agent.cert_pem, "data", *sig).ok());
}

TEST(Signing, SignerMustBeThisFleetsAgentForThisHost) {
  auto other_ca = createCa("other-ca", std::chrono::hours(24));
  ASSERT_TRUE(other_ca.ok());
  auto s = checkSigner(Pki::get().agent.cert_pem, other_ca->cert_pem, "web-03");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not issued by the fleet CA"), std::string::npos) << s;

  s = checkSigner(Pki::get().agent.cert_pem, Pki::get().ca.cert_pem, "db-01");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("\"web-03\", not \"db-01\""), std::string::npos) << s;

  CertRequest req;
  req.kind = PeerKind::kOperator;
  req.name = "web-03";
  req.role = Role::kAdmin;
  auto op = issueCert(Pki::get().ca, req);
  ASSERT_TRUE(op.ok());
  s = checkSigner(op->cert_pem, Pki::get().ca.cert_pem, "web-03");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("operator certificate, not an agent's"), std::string::npos) << s;

  // The CA's own certificate is not an agent.
  EXPECT_FALSE(checkSigner(Pki::get().ca.cert_pem, Pki::get().ca.cert_pem, "test-ca").ok());
}

TEST(Signing, Sha256Hex) {
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 h;
  h.update("a");
  h.update("bc");
  EXPECT_EQ(h.hexDigest(), sha256Hex("abc"));
}

nlohmann::json manifestFields() {
  return {{"capture_id", "cap-1"},    {"host_id", "web-03"},
          {"hostname", "web-03.lab"}, {"requested_by", "alice"},
          {"reason", "INC-42"},       {"requested_at_unix_ms", 1700000000000},
          {"started_at_unix_ms", 1},  {"finished_at_unix_ms", 2},
          {"clock_offset_ms", -3},    {"agent_version", "0.1.0"}};
}

// A small bundle: metadata, two artifacts, a binary and the collection log.
BundleWriter::Result writeSmallBundle(const TempDir& dir, const std::filesystem::path& out) {
  writeFile(dir / "bin", std::string(3000, 'x'));
  auto w = BundleWriter::create(out, "cap-1", manifestFields());
  EXPECT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE((*w)->addBytes("metadata.json", R"({"capture_id":"cap-1"})").ok());
  EXPECT_TRUE((*w)->addBytes("artifacts/processes.jsonl", "{\"pid\":1}\n{\"pid\":2}\n").ok());
  EXPECT_TRUE((*w)->addBytes("artifacts/sockets.jsonl", "").ok());
  EXPECT_TRUE((*w)->addFile("binaries/" + sha256Hex(std::string(3000, 'x')), dir / "bin").ok());
  EXPECT_TRUE((*w)->addBytes("collection-log.jsonl",
                             "{\"collector\":\"processes\",\"status\":\"ok\",\"error\":\"\"}\n"
                             "{\"collector\":\"hang\",\"status\":\"timeout\","
                             "\"error\":\"time limit 300 ms reached\"}\n")
                  .ok());
  auto r = (*w)->finish(Pki::signer());
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

VerifyOptions strict(const std::string& sha) { return {sha, Pki::get().ca.cert_pem, "web-03"}; }

std::string describe(const Verification& v) {
  std::string out;
  for (const auto& p : v.problems) out += p.file + ": " + p.problem + "\n";
  return out;
}

TEST(Bundle, FreshBundleVerifies) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  auto r = writeSmallBundle(dir, out);
  EXPECT_EQ(r.files, 5u);
  EXPECT_EQ(r.size, std::filesystem::file_size(out));
  EXPECT_EQ(r.sha256, sha256Hex(readFile(out)));

  auto v = verifyBundle(out, strict(r.sha256));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->ok()) << describe(*v);
  EXPECT_TRUE(v->signature_ok);
  EXPECT_EQ(v->files_checked, 5u);
  EXPECT_EQ(v->manifest_sha256, r.manifest_sha256);
  EXPECT_EQ(v->manifest["format"], "bulkhead-evidence/1");
  EXPECT_EQ(v->manifest["host_id"], "web-03");
  EXPECT_EQ(v->manifest["reason"], "INC-42");
  EXPECT_EQ(v->manifest["clock_offset_ms"], -3);
  ASSERT_EQ(v->manifest["files"].size(), 5u);
  EXPECT_EQ(v->manifest["files"][0]["path"], "metadata.json");
  EXPECT_EQ(v->manifest["files"][1]["size"], 20);
  EXPECT_EQ(v->manifest["files"][1]["sha256"], sha256Hex("{\"pid\":1}\n{\"pid\":2}\n"));
  ASSERT_EQ(v->collector_errors.size(), 1u);
  EXPECT_EQ(v->collector_errors[0], "hang: timeout: time limit 300 ms reached");

  auto m = readMember(out, "artifacts/processes.jsonl");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, "{\"pid\":1}\n{\"pid\":2}\n");
  EXPECT_EQ(readMember(out, "artifacts/nope.jsonl").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(readMember(out, "artifacts/processes.jsonl", 5).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(Bundle, StockToolsOpenAndCheckIt) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  writeSmallBundle(dir, out);
  const std::string d = dir.path().string();
  ASSERT_EQ(sh("tar tzf " + out.string() + " > " + d + "/list"), 0);
  EXPECT_EQ(readFile(dir / "list"),
            "cap-1/metadata.json\ncap-1/artifacts/processes.jsonl\ncap-1/artifacts/sockets.jsonl\n"
            "cap-1/binaries/" +
                sha256Hex(std::string(3000, 'x')) +
                "\ncap-1/collection-log.jsonl\ncap-1/manifest.json\ncap-1/manifest.sig\n"
                "cap-1/agent.crt\n");
  // The README's recipe: openssl checks the signature, sha256sum the files.
  ASSERT_EQ(sh("cd " + d +
               " && tar xzf b.tar.gz && cd cap-1 && "
               "openssl x509 -in agent.crt -pubkey -noout > ../agent.pub && "
               "openssl dgst -sha256 -verify ../agent.pub -signature manifest.sig manifest.json"
               " > /dev/null"),
            0);
  ASSERT_EQ(sh("cd " + d +
               "/cap-1 && python3 -c 'import json; [print(f[\"sha256\"] + \"  \" + "
               "f[\"path\"]) for f in json.load(open(\"manifest.json\"))[\"files\"]]' | "
               "sha256sum -c --quiet"),
            0);
}

TEST(Bundle, OneFlippedByteOfTheFileIsNamed) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  auto r = writeSmallBundle(dir, out);
  std::string bytes = readFile(out);
  for (size_t at : {bytes.size() / 2, size_t{20}, bytes.size() - 3}) {
    std::string changed = bytes;
    changed[at] ^= 0x01;
    writeFile(dir / "c.tar.gz", changed);
    auto v = verifyBundle(dir / "c.tar.gz", strict(r.sha256));
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_FALSE(v->ok());
    bool named = false;
    for (const auto& p : v->problems) {
      if (p.file == (dir / "c.tar.gz").string() &&
          p.problem.find("differs from the evidence id " + r.sha256) != std::string::npos) {
        named = true;
      }
    }
    EXPECT_TRUE(named) << "byte " << at << ":\n" << describe(*v);
  }
}

TEST(Bundle, CorruptStreamIsAProblemNotAnError) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  writeSmallBundle(dir, out);
  std::string bytes = readFile(out);
  writeFile(dir / "c.tar.gz", bytes.substr(0, bytes.size() / 2));
  auto v = verifyBundle(dir / "c.tar.gz", {});
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_FALSE(v->ok());
  EXPECT_EQ(v->problems[0].file, (dir / "c.tar.gz").string());
  EXPECT_NE(v->problems[0].problem.find("corrupt archive"), std::string::npos) << describe(*v);
  EXPECT_FALSE(v->signature_ok);

  writeFile(dir / "junk.tar.gz", "not a bundle at all");
  v = verifyBundle(dir / "junk.tar.gz", {});
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok());
  EXPECT_EQ(v->problems[0].file, (dir / "junk.tar.gz").string());

  EXPECT_EQ(verifyBundle(dir / "absent.tar.gz", {}).status().code(), absl::StatusCode::kNotFound);
}

// Extracts the bundle with tar, lets `edit` change the tree, packs it again with tar.
void repack(const TempDir& dir, const std::filesystem::path& bundle, const std::string& edit) {
  const std::string d = dir.path().string();
  ASSERT_EQ(sh("rm -rf " + d + "/x && mkdir " + d + "/x && tar xzf " + bundle.string() + " -C " +
               d + "/x && cd " + d + "/x/cap-1 && " + edit + " && cd .. && tar czf " +
               bundle.string() + " cap-1"),
            0);
}

TEST(Bundle, ChangedMemberIsNamedExactly) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  writeSmallBundle(dir, out);
  // One byte of one member changed, manifest and signature as they were.
  repack(dir, out, "printf '{\"pid\":3}\\n{\"pid\":2}\\n' > artifacts/processes.jsonl");
  auto v = verifyBundle(out, {"", Pki::get().ca.cert_pem, "web-03"});
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->problems.size(), 1u) << describe(*v);
  EXPECT_EQ(v->problems[0].file, "artifacts/processes.jsonl");
  EXPECT_EQ(v->problems[0].problem, "sha256 mismatch: manifest " +
                                        sha256Hex("{\"pid\":1}\n{\"pid\":2}\n") + ", content " +
                                        sha256Hex("{\"pid\":3}\n{\"pid\":2}\n"));
  EXPECT_TRUE(v->signature_ok);  // the manifest itself is intact
}

TEST(Bundle, AddedAndRemovedMembersAreNamed) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  writeSmallBundle(dir, out);
  repack(dir, out, "echo x > artifacts/extra.jsonl && rm artifacts/sockets.jsonl");
  auto v = verifyBundle(out, {});
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->problems.size(), 2u) << describe(*v);
  std::map<std::string, std::string> by_file;
  for (const auto& p : v->problems) by_file[p.file] = p.problem;
  EXPECT_EQ(by_file["artifacts/sockets.jsonl"], "missing");
  EXPECT_EQ(by_file["artifacts/extra.jsonl"], "not in the manifest");
}

TEST(Bundle, EditedManifestBreaksTheSignature) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  writeSmallBundle(dir, out);
  repack(dir, out, "sed -i 's/INC-42/INC-43/' manifest.json");
  auto v = verifyBundle(out, {"", Pki::get().ca.cert_pem, "web-03"});
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->problems.size(), 1u) << describe(*v);
  EXPECT_EQ(v->problems[0].file, "manifest.sig");
  EXPECT_FALSE(v->signature_ok);
}

TEST(Bundle, SignerCheckedAgainstCaAndHost) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  writeSmallBundle(dir, out);
  auto other_ca = createCa("other-ca", std::chrono::hours(24));
  ASSERT_TRUE(other_ca.ok());
  auto v = verifyBundle(out, {"", other_ca->cert_pem, "web-03"});
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 1u) << describe(*v);
  EXPECT_EQ(v->problems[0].file, "agent.crt");
  EXPECT_FALSE(v->signature_ok);
  v = verifyBundle(out, {"", Pki::get().ca.cert_pem, "db-01"});
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 1u) << describe(*v);
  EXPECT_EQ(v->problems[0].file, "agent.crt");
  EXPECT_NE(v->problems[0].problem.find("db-01"), std::string::npos);
}

TEST(Bundle, PathsEscapingTheTopDirectoryAreProblems) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  writeSmallBundle(dir, out);
  const std::string d = dir.path().string();
  ASSERT_EQ(sh("rm -rf " + d + "/x && mkdir -p " + d + "/x/evil && cd " + d + "/x && tar xzf " +
               out.string() + " && echo pwn > evil/a && tar czf " + out.string() + " cap-1 evil/a"),
            0);
  auto v = verifyBundle(out, {});
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 1u) << describe(*v);
  EXPECT_EQ(v->problems[0].file, "evil/a");
  EXPECT_NE(v->problems[0].problem.find("outside the bundle's top directory"), std::string::npos);
}

TEST(Bundle, WriterRefusesBadPaths) {
  TempDir dir;
  auto w = BundleWriter::create(dir / "b.tar.gz", "cap-1", manifestFields());
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE((*w)->addBytes("../x", "").ok());
  EXPECT_FALSE((*w)->addBytes("/etc/passwd", "").ok());
  EXPECT_FALSE((*w)->addBytes("a//b", "").ok());
  EXPECT_TRUE((*w)->addBytes("a", "1").ok());
  EXPECT_EQ((*w)->addBytes("a", "2").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(BundleWriter::create(dir / "c.tar.gz", "a/b", {}).ok());
  EXPECT_FALSE(BundleWriter::create(dir / "no/such/dir/c.tar.gz", "cap", {}).ok());
  // Destroyed unfinished: no partial bundle left behind.
  w->reset();
  EXPECT_FALSE(std::filesystem::exists(dir / "b.tar.gz"));
}

long maxRssKiB() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

TEST(Bundle, LargeMemberStreamsWithBoundedMemory) {
  TempDir dir;
  const uint64_t kSize = 80ull << 20;
  std::string expected_sha;
  {
    std::ofstream f(dir / "big", std::ios::binary);
    std::mt19937_64 rng(7);
    std::string block(1 << 20, '\0');
    Sha256 h;
    for (uint64_t done = 0; done < kSize; done += block.size()) {
      for (size_t i = 0; i < block.size(); i += 8) {
        uint64_t v = rng();
        std::memcpy(&block[i], &v, 8);
      }
      h.update(block);
      f.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    expected_sha = h.hexDigest();
  }
  const long rss_before = maxRssKiB();
  auto out = dir / "b.tar.gz";
  auto w = BundleWriter::create(out, "cap-big", {{"host_id", "web-03"}});
  ASSERT_TRUE(w.ok());
  uint64_t progress_calls = 0, last = 0;
  (*w)->setProgress([&](uint64_t bytes) { ++progress_calls, last = bytes; }, 4 << 20);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE((*w)->addFile("binaries/" + expected_sha, dir / "big").ok());
  auto r = (*w)->finish(Pki::signer());
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(progress_calls, 20u);
  EXPECT_GE(last, kSize);
  auto t1 = std::chrono::steady_clock::now();
  auto v = verifyBundle(out, strict(r->sha256));
  auto verify_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1)
          .count();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << describe(*v);
  EXPECT_EQ(v->manifest["files"][0]["sha256"], expected_sha);
  EXPECT_EQ(v->manifest["files"][0]["size"], kSize);
  const long grown_kib = maxRssKiB() - rss_before;
  EXPECT_LT(grown_kib, 24 * 1024) << "peak RSS grew by " << grown_kib << " KiB";
  std::printf(
      "80 MiB incompressible member: pack %lld ms (%.0f MiB/s), verify %lld ms "
      "(%.0f MiB/s), bundle %llu bytes (overhead %lld bytes), peak RSS +%ld KiB\n",
      static_cast<long long>(ms), 80.0 * 1000 / static_cast<double>(std::max<long long>(ms, 1)),
      static_cast<long long>(verify_ms),
      80.0 * 1000 / static_cast<double>(std::max<long long>(verify_ms, 1)),
      static_cast<unsigned long long>(r->size),
      static_cast<long long>(r->size) - static_cast<long long>(kSize), grown_kib);
}

TEST(Bundle, ProblemsOfACraftedBundleAreBoundedAndEscaped) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  writeSmallBundle(dir, out);
  // 3000 members the manifest does not list, one with a terminal escape in its name.
  repack(dir, out,
         "mkdir junk && cd junk && seq 1 3000 | sed 's/^/bogus-/' | xargs touch && "
         "touch \"$(printf 'evil\\033[31mred')\" && cd ..");
  auto v = verifyBundle(out, strict(""));
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->problems.size(), kMaxProblems + 1);
  EXPECT_EQ(v->problems_omitted, 3001u - kMaxProblems);
  EXPECT_EQ(v->problems.back().problem,
            "... and " + std::to_string(3001 - kMaxProblems) + " more problems not listed");
  for (const auto& p : v->problems) {
    EXPECT_EQ(p.file.find('\033'), std::string::npos) << p.file;
    EXPECT_LE(p.file.size() + p.problem.size(), 2048u);
  }
  EXPECT_TRUE(v->signature_ok);  // the signed manifest itself is intact
}

TEST(Bundle, ManifestAndLogFieldsOfTheWrongTypeAreProblemsNotExceptions) {
  TempDir dir;
  auto out = dir / "b.tar.gz";
  writeSmallBundle(dir, out);
  // Every field the verifier reads, with another type (the signature no longer matches).
  repack(dir, out,
         "sed -i -e 's/\"host_id\": \"web-03\"/\"host_id\": 42/' "
         "-e 's/\"format\": \"bulkhead-evidence\\/1\"/\"format\": [1]/' "
         "-e 's/\"sha256\": \"[0-9a-f]*\"/\"sha256\": 7/' -e 's/\"size\": [0-9]*/\"size\": -1/' "
         "manifest.json && grep -q '\"host_id\": 42' manifest.json && "
         "printf '{\"collector\":5,\"status\":[\"x\"],\"error\":{}}\\n' > collection-log.jsonl");
  absl::StatusOr<Verification> v = absl::UnknownError("not run");
  ASSERT_NO_THROW(v = verifyBundle(out, strict("")));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_FALSE(v->ok());
  EXPECT_FALSE(v->signature_ok);
  const std::string all = describe(*v);
  EXPECT_NE(all.find("manifest.json: format: not the string"), std::string::npos) << all;
  EXPECT_NE(all.find("host_id \"\" is not the signer's \"web-03\""), std::string::npos) << all;
  EXPECT_NE(all.find("sha256 mismatch: manifest , content"), std::string::npos) << all;
  ASSERT_EQ(v->collector_errors.size(), 1u);
  EXPECT_EQ(v->collector_errors[0], "?: : ");
}

}  // namespace
}  // namespace bulkhead::evidence
