// EvidenceUploader against an in-process AgentChannel server on 127.0.0.1 (insecure
// credentials: the mTLS path is the session's and is tested in controller_session_test).
#include "agent/rpc/evidence_uploader.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <random>

#include "evidence/hash.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = 1024 * 1024;

using evidence::sha256Hex;

// Stores what one upload sent; answers with the SHA-256 of the bytes (as the controller does).
class FakeChannel final : public v1::AgentChannel::Service {
 public:
  grpc::Status UploadEvidence(grpc::ServerContext*, grpc::ServerReader<v1::EvidenceUpload>* reader,
                              v1::EvidenceReceipt* receipt) override {
    v1::EvidenceUpload m;
    v1::EvidenceHeader header;
    std::string data;
    size_t chunks = 0;
    size_t max_chunk = 0;
    bool first = true;
    while (reader->Read(&m)) {
      if (first) {
        if (!m.has_header()) return {grpc::StatusCode::INVALID_ARGUMENT, "header first"};
        header = m.header();
        first = false;
        continue;
      }
      if (!m.has_data()) return {grpc::StatusCode::INVALID_ARGUMENT, "data expected"};
      data += m.data();
      ++chunks;
      max_chunk = std::max(max_chunk, m.data().size());
    }
    std::lock_guard lock(mu);
    last_header = header;
    last_chunks = chunks;
    last_max_chunk = max_chunk;
    last_sha = sha256Hex(data);
    last_size = data.size();
    ++uploads;
    if (data.size() != header.size() || last_sha != header.sha256()) {
      return {grpc::StatusCode::DATA_LOSS, "size or sha256 differs from the header"};
    }
    receipt->set_evidence_id(last_sha);
    return grpc::Status::OK;
  }

  std::mutex mu;
  v1::EvidenceHeader last_header;
  size_t last_chunks = 0;
  size_t last_max_chunk = 0;
  std::string last_sha;
  uint64_t last_size = 0;
  int uploads = 0;
};

class UploaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&service_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    dir_ = fs::temp_directory_path() /
           ("uploader_test." + std::to_string(::getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    fs::remove_all(dir_);
  }

  EvidenceUploaderOptions options(std::vector<std::string> targets) {
    EvidenceUploaderOptions o;
    o.session.targets = std::move(targets);
    o.session.credentials = grpc::InsecureChannelCredentials();
    return o;
  }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  // Writes `size` pseudo-random bytes; returns them.
  std::string writeBundle(const fs::path& p, uint64_t size) {
    std::string data(size, '\0');
    std::mt19937_64 rng(42);
    for (size_t i = 0; i + 8 <= data.size(); i += 8) {
      uint64_t v = rng();
      std::memcpy(&data[i], &v, 8);
    }
    std::ofstream(p, std::ios::binary)
        .write(data.data(), static_cast<std::streamsize>(data.size()));
    return data;
  }

  FakeChannel service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  fs::path dir_;
};

TEST_F(UploaderTest, StreamsMoreThan64MiBInChunksOfAtMost1MiB) {
  const uint64_t size = 64 * kMiB + 12345;
  fs::path bundle = dir_ / "cap-1.tar.gz";
  std::string data = writeBundle(bundle, size);
  v1::EvidenceHeader h;
  h.set_capture_id("cap-1");
  h.set_size(size);
  h.set_sha256(sha256Hex(data));
  h.set_file_name("cap-1.tar.gz");
  h.set_command_id("cmd-1");
  data.clear();

  std::vector<std::pair<uint64_t, uint64_t>> progress;
  EvidenceUploader up(options({target()}));
  auto receipt = up.upload(
      bundle, h, [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); });
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  EXPECT_EQ(receipt->evidence_id(), h.sha256());
  std::lock_guard lock(service_.mu);
  EXPECT_EQ(service_.last_size, size);
  EXPECT_EQ(service_.last_sha, h.sha256());
  EXPECT_EQ(service_.last_header.capture_id(), "cap-1");
  EXPECT_EQ(service_.last_header.command_id(), "cmd-1");
  EXPECT_EQ(service_.last_chunks, 65u);
  EXPECT_EQ(service_.last_max_chunk, kMiB);
  // Every ~4 MiB, then once at the end.
  ASSERT_GE(progress.size(), 16u);
  EXPECT_LE(progress.size(), 18u);
  for (size_t i = 1; i < progress.size(); ++i) EXPECT_GE(progress[i].first, progress[i - 1].first);
  EXPECT_EQ(progress.back(), std::make_pair(size, size));
}

TEST_F(UploaderTest, TriesTheNextTargetWhenOneIsUnreachable) {
  fs::path bundle = dir_ / "b.tar.gz";
  std::string data = writeBundle(bundle, 3000);
  v1::EvidenceHeader h;
  h.set_capture_id("b");
  h.set_size(data.size());
  h.set_sha256(sha256Hex(data));
  EvidenceUploader up(options({"127.0.0.1:1", target()}));
  auto receipt = up.upload(bundle, h, nullptr);
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  EXPECT_EQ(receipt->evidence_id(), h.sha256());
}

TEST_F(UploaderTest, FailuresNameTheCause) {
  fs::path bundle = dir_ / "c.tar.gz";
  std::string data = writeBundle(bundle, 5000);
  v1::EvidenceHeader h;
  h.set_capture_id("c");
  h.set_size(data.size() + 10);  // the file is shorter than spooled
  h.set_sha256(sha256Hex(data));
  EvidenceUploader up(options({target()}));
  auto short_file = up.upload(bundle, h, nullptr);
  ASSERT_FALSE(short_file.ok());
  EXPECT_NE(std::string(short_file.status().message()).find("5000 bytes"), std::string::npos)
      << short_file.status();

  h.set_size(data.size());
  h.set_sha256(std::string(64, '0'));  // the controller rejects a wrong hash
  auto wrong = up.upload(bundle, h, nullptr);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(std::string(wrong.status().message()).find("DATA_LOSS"), std::string::npos)
      << wrong.status();

  auto missing = up.upload(dir_ / "nope.tar.gz", h, nullptr);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("nope.tar.gz"), std::string::npos);

  EvidenceUploader down(options({"127.0.0.1:1"}));
  auto unreachable = down.upload(bundle, h, nullptr);
  ASSERT_FALSE(unreachable.ok());
  EXPECT_NE(std::string(unreachable.status().message()).find("UNAVAILABLE"), std::string::npos)
      << unreachable.status();

  up.cancel();
  auto cancelled = up.upload(bundle, h, nullptr);
  ASSERT_FALSE(cancelled.ok());
  EXPECT_TRUE(absl::IsCancelled(cancelled.status())) << cancelled.status();
}

TEST(EvidenceUploader, OwnChannelAndSizeBasedDeadline) {
  SessionOptions o;
  o.ssl_target_name = "bulkhead-controller";
  grpc::ChannelArguments args = evidenceChannelArguments(o);
  grpc_channel_args c = args.c_channel_args();
  bool found = false;
  for (size_t i = 0; i < c.num_args; ++i) {
    if (std::string(c.args[i].key) == kChannelPurposeArg) {
      ASSERT_EQ(c.args[i].type, GRPC_ARG_STRING);
      EXPECT_STREQ(c.args[i].value.string, "evidence");
      found = true;
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(uploadDeadline(0).count(), 60);
  EXPECT_EQ(uploadDeadline(1).count(), 61);
  EXPECT_EQ(uploadDeadline(100 * kMiB).count(), 160);
}

}  // namespace
}  // namespace bulkhead::agent
