// The logic of an agent's evidence upload without its transport (EvidenceIntake,
// IncomingUpload): the header against the capture requested for the uploading host, the limits,
// the bytes, the hash, and what is stored, recorded in custody and audited. A real SQLite store
// behind a fault-injecting one, files under a temporary directory, steps called in the order a
// front door calls them.
#include "controller/service/evidence_intake.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controller/service/record_text.h"
#include "controller/store/sqlite_store.h"
#include "evidence/hash.h"
#include "tests/unit/controller/fake_clock.h"
#include "tests/unit/controller/faulty_store.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;
namespace v1 = bulkhead::v1;

TEST(UploadHeaderCheck, EachFieldIsBoundedAndNamed) {
  const UploadHeader good{.capture_id = "cap-1",
                          .command_id = "capture-1",
                          .file_name = "cap-1.tar.gz",
                          .sha256 = std::string(64, 'a'),
                          .size = 10};
  EXPECT_TRUE(checkUploadHeader(good, 10).ok());
  auto refusal = [&](const UploadHeader& h, uint64_t max_bytes = 100) {
    absl::Status s = checkUploadHeader(h, max_bytes);
    EXPECT_FALSE(s.ok());
    return s;
  };
  UploadHeader h = good;
  h.capture_id.clear();
  EXPECT_EQ(refusal(h).message(), "header.capture_id: required");
  h.capture_id = std::string(kMaxUploadCaptureId + 1, 'c');
  EXPECT_EQ(refusal(h).message(), "header.capture_id: 257 bytes, more than 256");
  h = good;
  h.command_id = std::string(kMaxUploadCommandId + 1, 'c');
  EXPECT_EQ(refusal(h).message(), "header.command_id: 257 bytes, more than 256");
  h = good;
  h.file_name = std::string(kMaxUploadFileName + 1, 'f');
  EXPECT_EQ(refusal(h).message(), "header.file_name: 256 bytes, more than 255");
  h = good;
  h.sha256 = std::string(64, 'A');
  EXPECT_EQ(refusal(h).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refusal(h).message().find("header.sha256"), std::string::npos);
  h.sha256 = "ab\x1b[2J";  // echoed escaped
  EXPECT_EQ(refusal(h).message().find('\x1b'), std::string::npos) << refusal(h);
  h = good;
  h.size = 0;
  EXPECT_EQ(refusal(h).message(), "header.size: 0 (an empty bundle)");
  h.size = 11;
  absl::Status over = refusal(h, 10);
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.message().find("--max-evidence-bytes"), std::string::npos) << over;
}

class EvidenceIntakeTest : public ::testing::Test {
 protected:
  EvidenceIntakeTest() {
    char tmpl[] = "/tmp/bh-evidence-intake-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto store = SqliteStore::create(dir_ / "controller.db");
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    faulty_ = std::make_unique<testing::FaultyStore>(*store_);
    files_ = std::make_unique<EvidenceFiles>(dir_ / "evidence");
    EXPECT_TRUE(files_->init().ok());
    options_.progress_every = 4;
    restart();
    addCapture("cap-1", "web-01");
  }
  ~EvidenceIntakeTest() override {
    intake_.reset();
    faulty_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  void restart() {
    intake_ = std::make_unique<EvidenceIntake>(
        clock_, *faulty_, *files_, options_,
        [this](const std::string& host, const v1::CommandProgress& p) {
          progress_.emplace_back(host, p);
        });
  }

  void addCapture(const std::string& capture_id, const std::string& host) {
    ASSERT_TRUE(store_
                    ->addCapture({.capture_id = capture_id,
                                  .host_id = host,
                                  .requested_by = "alice",
                                  .reason = "INC-7",
                                  .requested_at_unix_ms = clock_.nowUnixMs() - 1000,
                                  .command_id = "command-of-" + capture_id})
                    .ok());
  }

  static UploadHeader header(const std::string& capture_id, const std::string& bytes) {
    return {.capture_id = capture_id,
            .command_id = "the agent's claim",
            .file_name = capture_id + ".tar.gz",
            .sha256 = evidence::sha256Hex(bytes),
            .size = bytes.size()};
  }

  // An upload of `bytes` for `capture_id` from `host`, through every step a front door takes;
  // the receipt or the status the refusal is answered with (after refuse()).
  absl::StatusOr<UploadReceipt> upload(const std::string& host, const std::string& capture_id,
                                       const std::string& bytes,
                                       std::optional<UploadHeader> announced = std::nullopt) {
    auto u = intake_->receive(host, kDefaultTenant);
    auto result = run(*u, announced ? *announced : header(capture_id, bytes), bytes);
    u->release();
    return result;
  }
  absl::StatusOr<UploadReceipt> run(IncomingUpload& u, UploadHeader h, const std::string& bytes) {
    if (auto s = u.setHeader(std::move(h)); !s.ok()) return u.refuse(s);
    auto begun = u.begin();
    if (!begun.ok()) return u.refuse(begun.status());
    if (begun->has_value()) return **begun;
    for (size_t at = 0; at < bytes.size(); at += 7) {
      if (auto s = u.append(std::string_view(bytes).substr(at, 7)); !s.ok()) return u.refuse(s);
    }
    if (auto s = u.endOfData(); !s.ok()) return u.refuse(s);
    auto receipt = u.complete();
    if (!receipt.ok()) return u.refuse(receipt.status());
    return receipt;
  }

  std::optional<AuditEntry> lastAudit() {
    auto rows = store_->listAudit(100);
    EXPECT_TRUE(rows.ok()) << rows.status();
    std::optional<AuditEntry> last;
    for (const auto& r : *rows) {
      if (r.action == kEvidenceReceivedAction && (!last || r.id > last->id)) last = r;
    }
    return last;
  }
  size_t filesUnder(const fs::path& dir) {
    size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
    return n;
  }
  // Bundles stored and part files left.
  size_t storedFiles() {
    return filesUnder(files_->root()) - filesUnder(files_->root() / "incoming");
  }
  size_t partFiles() { return filesUnder(files_->root() / "incoming"); }

  FakeClock clock_;
  fs::path dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<testing::FaultyStore> faulty_;  // what the intake uses
  std::unique_ptr<EvidenceFiles> files_;
  EvidenceIntakeOptions options_;
  std::unique_ptr<EvidenceIntake> intake_;
  std::vector<std::pair<std::string, v1::CommandProgress>> progress_;
};

TEST_F(EvidenceIntakeTest, AnAcceptedUploadIsStoredWithItsCustodyAndAudited) {
  const std::string bytes = "not a real bundle, stored all the same";
  auto receipt = upload("web-01", "cap-1", bytes);
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  const std::string id = evidence::sha256Hex(bytes);
  EXPECT_EQ(receipt->evidence_id, id);
  EXPECT_FALSE(receipt->already_stored);

  auto row = store_->getEvidence(id);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->capture_id, "cap-1");
  EXPECT_EQ(row->host_id, "web-01");
  EXPECT_EQ(row->requested_by, "alice");
  EXPECT_EQ(row->size, bytes.size());
  EXPECT_EQ(row->file_name, "cap-1.tar.gz");
  EXPECT_FALSE(row->signature_ok);  // evidence is never dropped, even when it fails the check
  EXPECT_EQ(store_->getCapture("cap-1")->state, "received");
  auto path = files_->bundlePath(id);
  ASSERT_TRUE(path.ok());
  EXPECT_TRUE(fs::exists(*path));
  EXPECT_EQ(partFiles(), 0u);

  auto custody = store_->listCustody(id);
  ASSERT_TRUE(custody.ok()) << custody.status();
  ASSERT_EQ(custody->size(), 3u);
  EXPECT_EQ((*custody)[0].action, kCustodyRequested);
  EXPECT_EQ((*custody)[0].actor, "alice");
  EXPECT_EQ((*custody)[1].action, kCustodyCollected);
  EXPECT_EQ((*custody)[2].action, kCustodyReceived);
  EXPECT_EQ((*custody)[2].actor, "agent:web-01");
  EXPECT_NE((*custody)[2].detail.find("signature NOT OK"), std::string::npos)
      << (*custody)[2].detail;
  EXPECT_TRUE(store_->verifyCustody(id)->ok);

  auto audit = lastAudit();
  ASSERT_TRUE(audit.has_value());
  EXPECT_EQ(audit->operator_name, "agent:web-01");
  EXPECT_EQ(audit->target, id);
  EXPECT_EQ(audit->outcome, "ok");
  EXPECT_EQ(audit->reason, "INC-7");

  // Progress names the command the controller recorded, never the header's claim: 0, every
  // 4 bytes and the last, then stored.
  ASSERT_GE(progress_.size(), 3u);
  for (const auto& [host, p] : progress_) {
    EXPECT_EQ(host, "web-01");
    EXPECT_EQ(p.command_id(), "command-of-cap-1");
  }
  EXPECT_EQ(progress_.front().second.capture_stage(), v1::CAPTURE_STAGE_UPLOADING);
  EXPECT_EQ(progress_.front().second.done(), 0u);
  EXPECT_EQ(progress_[progress_.size() - 2].second.done(), bytes.size());
  EXPECT_EQ(progress_.back().second.capture_stage(), v1::CAPTURE_STAGE_STORED);
  EXPECT_EQ(progress_.back().second.detail(), id);
}

TEST_F(EvidenceIntakeTest, ACaptureOfAnotherHostIsRefusedAndAudited) {
  auto refused = upload("db-01", "cap-1", "bytes");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "capture cap-1 was requested for host web-01, not for db-01");
  auto audit = lastAudit();
  ASSERT_TRUE(audit.has_value());
  EXPECT_EQ(audit->operator_name, "agent:db-01");
  EXPECT_EQ(audit->target, "cap-1");
  EXPECT_EQ(audit->outcome, "denied");
  EXPECT_EQ(storedFiles(), 0u);
  EXPECT_EQ(store_->getCapture("cap-1")->state, "requested");
}

TEST_F(EvidenceIntakeTest, AnUnknownCaptureIsRefused) {
  auto refused = upload("web-01", "cap-never", "bytes");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(lastAudit()->outcome, "error: " + std::string(refused.status().message()));
  EXPECT_EQ(storedFiles(), 0u);
}

TEST_F(EvidenceIntakeTest, AFinishedCaptureTakesOnlyItsOwnBytesAgainAsAReceipt) {
  ASSERT_TRUE(upload("web-01", "cap-1", "the bundle").ok());
  // The same bytes again (a lost receipt): answered from the header alone, nothing received.
  auto u = intake_->receive("web-01", kDefaultTenant);
  ASSERT_TRUE(u->setHeader(header("cap-1", "the bundle")).ok());
  auto begun = u->begin();
  ASSERT_TRUE(begun.ok()) << begun.status();
  ASSERT_TRUE(begun->has_value());
  EXPECT_TRUE((*begun)->already_stored);
  EXPECT_EQ((*begun)->evidence_id, evidence::sha256Hex("the bundle"));
  u->release();
  auto custody = store_->listCustody(evidence::sha256Hex("the bundle"));
  ASSERT_EQ(custody->size(), 4u);
  EXPECT_NE(custody->back().detail.find("again (capture cap-1)"), std::string::npos);
  EXPECT_EQ(lastAudit()->detail, "capture cap-1: already stored");
  // Other bytes for it: refused.
  auto other = upload("web-01", "cap-1", "another bundle");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(other.status().message().find(evidence::sha256Hex("the bundle")), std::string::npos)
      << other.status();
  EXPECT_EQ(storedFiles(), 1u);
}

TEST_F(EvidenceIntakeTest, OversizeUploadsAreRefusedBeforeAnyByteIsWritten) {
  options_.max_bytes = 8;
  options_.host_quota_bytes = 12;
  restart();
  auto big = upload("web-01", "cap-1", "nine byte");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(big.status().message().find("--max-evidence-bytes"), std::string::npos);
  // Over the host's quota, counting its uploads in progress.
  addCapture("cap-2", "web-01");
  auto first = intake_->receive("web-01", kDefaultTenant);
  ASSERT_TRUE(first->setHeader(header("cap-1", "12345678")).ok());
  ASSERT_TRUE(first->begin().ok());
  auto over = upload("web-01", "cap-2", "abcdefgh");  // 8 in progress and 8 more: over 12
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.status().message().find("--evidence-host-quota"), std::string::npos)
      << over.status();
  EXPECT_EQ(lastAudit()->outcome, "error: " + std::string(over.status().message()));
  EXPECT_EQ(partFiles(), 1u);  // the first one's
  // More bytes than announced, or fewer: refused, the part file removed.
  EXPECT_EQ(first->append("123456789").code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(first->append("1234567").ok());
  absl::Status short_by_one = first->endOfData();
  EXPECT_EQ(short_by_one.message(),
            "upload of capture cap-1 ended after 7 of 8 bytes; nothing stored");
  EXPECT_EQ(first->refuse(short_by_one), short_by_one);
  first->release();
  EXPECT_EQ(partFiles(), 0u);
  EXPECT_EQ(storedFiles(), 0u);
  // The place is free again.
  EXPECT_TRUE(upload("web-01", "cap-2", "abcdefgh").ok());
}

TEST_F(EvidenceIntakeTest, UploadsInProgressAreCappedPerHost) {
  options_.max_uploads_per_host = 1;
  restart();
  addCapture("cap-2", "web-01");
  auto first = intake_->receive("web-01", kDefaultTenant);
  ASSERT_TRUE(first->setHeader(header("cap-1", "one")).ok());
  ASSERT_TRUE(first->begin().ok());
  auto second = upload("web-01", "cap-2", "two");
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("--max-evidence-uploads-per-host"), std::string::npos)
      << second.status();
  first->release();
  EXPECT_TRUE(upload("web-01", "cap-2", "two").ok());
}

TEST_F(EvidenceIntakeTest, AHashMismatchStoresNothing) {
  UploadHeader lying = header("cap-1", "what was announced");
  lying.size = 14;
  auto refused = upload("web-01", "cap-1", "what was sent!", lying);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(refused.status().message().find("sha256 mismatch"), std::string::npos)
      << refused.status();
  EXPECT_EQ(lastAudit()->outcome, "error: " + std::string(refused.status().message()));
  EXPECT_EQ(storedFiles(), 0u);
  EXPECT_EQ(partFiles(), 0u);
  EXPECT_EQ(store_->getCapture("cap-1")->state, "requested");
}

TEST_F(EvidenceIntakeTest, AStoreThatCannotRecordTheBundleGivesNoReceipt) {
  faulty_->failNext("addEvidence");
  auto refused = upload("web-01", "cap-1", "the bundle");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(refused.status().message().find("cannot record"), std::string::npos)
      << refused.status();
  EXPECT_EQ(store_->getCapture("cap-1")->state, "requested");
  // The file stayed at its content address; the retry records it.
  auto retry = upload("web-01", "cap-1", "the bundle");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->already_stored);
  // A refusal whose audit row cannot be written is answered INTERNAL.
  addCapture("cap-2", "db-01");
  faulty_->failNext("appendAudit");
  auto unaudited = upload("web-01", "cap-2", "x");
  ASSERT_FALSE(unaudited.ok());
  EXPECT_EQ(unaudited.status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace bulkhead::controller
