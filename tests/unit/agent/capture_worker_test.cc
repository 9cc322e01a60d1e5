// The agent's capture worker: sidecar files as pure functions, then the worker with a fake
// capture engine and a fake upload (failing, then succeeding on retry).
#include "agent/daemon/capture_worker.h"

#include <gtest/gtest.h>

#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/pki/pki.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kSha(64, 'a');

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("capture_worker_test." + std::to_string(::getpid()) + "." +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void touch(const fs::path& p, const std::string& data = "x") { std::ofstream(p) << data; }

v1::EvidenceHeader header(const std::string& id) {
  v1::EvidenceHeader h;
  h.set_capture_id(id);
  h.set_size(1);
  h.set_sha256(kSha);
  h.set_file_name(id + ".tar.gz");
  h.set_command_id("cmd-" + id);
  return h;
}

TEST(Sidecar, RoundTrip) {
  auto s = parseSidecar("/spool", sidecarJson(header("cap-1"), 1234));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->header.capture_id(), "cap-1");
  EXPECT_EQ(s->header.size(), 1u);
  EXPECT_EQ(s->header.sha256(), kSha);
  EXPECT_EQ(s->header.file_name(), "cap-1.tar.gz");
  EXPECT_EQ(s->header.command_id(), "cmd-cap-1");
  EXPECT_EQ(s->spooled_at_unix_ms, 1234);
  EXPECT_EQ(s->bundle, "/spool/cap-1.tar.gz");
  EXPECT_EQ(s->sidecar, "/spool/cap-1.json");
}

TEST(Sidecar, RejectsNamesOutsideTheSpoolAndBadFields) {
  auto bad = [](json j, const std::string& needle) {
    auto s = parseSidecar("/spool", j.dump());
    ASSERT_FALSE(s.ok()) << j.dump();
    EXPECT_NE(std::string(s.status().message()).find(needle), std::string::npos) << s.status();
  };
  json good = json::parse(sidecarJson(header("cap-1"), 1));
  auto with = [&](const char* key, json v) {
    json j = good;
    j[key] = v;
    return j;
  };
  bad(with("file_name", "../../etc/passwd"), "file_name");
  bad(with("file_name", ".."), "file_name");
  bad(with("capture_id", "a/b"), "capture_id");
  bad(with("sha256", "xyz"), "sha256");
  bad(with("size", -1), "size");
  bad(with("size", "12"), "size");
  bad(json::array(), "object");
  auto s = parseSidecar("/spool", "not json");
  EXPECT_FALSE(s.ok());
}

TEST(Sidecar, PendingUploadsOldestFirstAndProblemsReported) {
  TempDir dir;
  auto spool = [&](const std::string& id, int64_t at, bool with_bundle) {
    SpooledBundle s;
    s.header = header(id);
    s.spooled_at_unix_ms = at;
    ASSERT_TRUE(writeSidecar(dir.path(), s).ok());
    if (with_bundle) touch(dir.path() / (id + ".tar.gz"));
  };
  spool("cap-b", 200, true);
  spool("cap-a", 300, true);
  spool("cap-c", 100, true);
  spool("cap-gone", 50, false);
  touch(dir.path() / "cap-orphan.tar.gz");  // no sidecar: never finished, left alone
  touch(dir.path() / "broken.json", "{");
  std::vector<std::string> problems;
  auto pending = pendingUploads(dir.path(), &problems);
  ASSERT_EQ(pending.size(), 3u);
  EXPECT_EQ(pending[0].header.capture_id(), "cap-c");
  EXPECT_EQ(pending[1].header.capture_id(), "cap-b");
  EXPECT_EQ(pending[2].header.capture_id(), "cap-a");
  ASSERT_EQ(problems.size(), 2u);
  std::string all = problems[0] + problems[1];
  EXPECT_NE(all.find("broken.json"), std::string::npos);
  EXPECT_NE(all.find("missing"), std::string::npos);

  removeSpooled(pending[0]);
  EXPECT_FALSE(fs::exists(dir.path() / "cap-c.tar.gz"));
  EXPECT_FALSE(fs::exists(dir.path() / "cap-c.json"));
  EXPECT_TRUE(fs::exists(dir.path() / "cap-orphan.tar.gz"));
  problems.clear();
  EXPECT_TRUE(pendingUploads(dir.path() / "absent", &problems).empty());
}

TEST(CaptureResult, Documents) {
  v1::EvidenceReceipt receipt;
  receipt.set_evidence_id(kSha);
  v1::CaptureResult r = captureResult(
      header("cap-1"), receipt, 1500,
      json::array({{{"collector", "processes"},
                    {"status", "truncated"},
                    {"bytes", 12},
                    {"error", "size cap of 12 bytes reached"},
                    {"warnings", 1},
                    {"warning_samples", {"bad \xff line"}}},
                   {{"collector", "kernel"}, {"status", "sideways"}}}));
  EXPECT_EQ(r.capture_id(), "cap-1");
  EXPECT_EQ(r.evidence_id(), kSha);
  EXPECT_EQ(r.sha256(), kSha);
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(r.duration_ms(), 1500);
  ASSERT_EQ(r.collectors_size(), 2);
  EXPECT_EQ(r.collectors(0).collector(), "processes");
  EXPECT_EQ(r.collectors(0).status(), v1::COLLECTOR_STATUS_TRUNCATED);
  EXPECT_EQ(r.collectors(0).bytes(), 12u);
  EXPECT_EQ(r.collectors(0).error(), "size cap of 12 bytes reached");
  EXPECT_EQ(r.collectors(0).warnings(), 1u);
  ASSERT_EQ(r.collectors(0).warning_samples_size(), 1);
  // Proto strings are UTF-8: an invalid byte reads as U+FFFD.
  EXPECT_EQ(r.collectors(0).warning_samples(0), "bad \xef\xbf\xbd line");
  EXPECT_EQ(r.collectors(1).status(), v1::COLLECTOR_STATUS_UNSPECIFIED);
  EXPECT_EQ(keptOnHostError("/s/cap-1.tar.gz", "UNAVAILABLE: down"),
            "evidence kept on the host at /s/cap-1.tar.gz; upload failed: UNAVAILABLE: down; "
            "will retry");
  EXPECT_EQ(makeTestHangCollector()->name(), "test-hang");
}

// Records what the worker sends; the fake engine writes a small bundle.
struct Harness {
  std::mutex mu;
  std::vector<v1::AgentMessage> sent;
  std::vector<std::string> collector_names;
  int upload_failures_left = 0;
  absl::StatusCode failure_code = absl::StatusCode::kUnavailable;
  std::vector<std::string> uploaded;  // capture ids, in order of the attempts
  int uploads = 0;

  CaptureWorker::Deps deps() {
    CaptureWorker::Deps d;
    d.run_capture = [this](const CaptureOptions& o,
                           std::vector<std::unique_ptr<collect::Collector>> collectors,
                           const evidence::Signer&,
                           const CaptureProgress& progress) -> absl::StatusOr<CaptureOutcome> {
      {
        std::lock_guard lock(mu);
        for (const auto& c : collectors) collector_names.emplace_back(c->name());
      }
      progress(v1::CAPTURE_STAGE_COLLECTING, "fake ok 1 ms", 1, 1);
      CaptureOutcome out;
      out.file_name = o.context.capture_id + ".tar.gz";
      out.bundle = o.spool_dir / out.file_name;
      touch(out.bundle, "bundle");
      out.size = 6;
      out.sha256 = kSha;
      out.duration_ms = 7;
      out.collectors = json::array({{{"collector", "fake"}, {"status", "ok"}}});
      return out;
    };
    d.collectors = [] { return std::vector<std::unique_ptr<collect::Collector>>(); };
    d.upload = [this](const fs::path&, const v1::EvidenceHeader& h,
                      const std::function<void(uint64_t, uint64_t)>& progress)
        -> absl::StatusOr<v1::EvidenceReceipt> {
      {
        std::lock_guard lock(mu);
        ++uploads;
        uploaded.push_back(h.capture_id());
        if (upload_failures_left > 0) {
          --upload_failures_left;
          if (failure_code != absl::StatusCode::kUnavailable) {
            return absl::Status(failure_code, "refused");
          }
          return absl::UnavailableError("UNAVAILABLE: controller down");
        }
      }
      progress(h.size(), h.size());  // sends: not under mu
      v1::EvidenceReceipt r;
      r.set_evidence_id(h.sha256());
      return r;
    };
    d.send = [this](const v1::AgentMessage& m) {
      std::lock_guard lock(mu);
      sent.push_back(m);
    };
    d.now_unix_ms = [] { return int64_t{1'700'000'000'000}; };
    return d;
  }

  std::vector<v1::CommandResult> results() {
    std::lock_guard lock(mu);
    std::vector<v1::CommandResult> out;
    for (const auto& m : sent) {
      if (m.has_command_result()) out.push_back(m.command_result());
    }
    return out;
  }
};

v1::Command captureCommand(const std::string& id, const std::string& capture_id) {
  v1::Command c;
  c.set_id(id);
  c.set_requested_by("alice");
  c.set_reason("INC-42");
  c.mutable_capture()->set_capture_id(capture_id);
  return c;
}

absl::StatusOr<evidence::Signer> testSigner() {
  auto ca = createCa("test-ca", std::chrono::hours(24));
  if (!ca.ok()) return ca.status();
  auto agent = issueCert(*ca, {PeerKind::kAgent, "web-03"});
  if (!agent.ok()) return agent.status();
  return evidence::Signer::fromPem(agent->key_pem, agent->cert_pem);
}

TEST(CaptureWorker, UploadsAndAnswersWithTheReceipt) {
  auto signer = testSigner();
  ASSERT_TRUE(signer.ok()) << "a test identity could not sign: " << signer.status();
  TempDir dir;
  Harness h;
  CaptureWorkerOptions o;
  o.spool_dir = dir.path() / "evidence";
  o.test_hang_collector = true;
  CaptureWorker w(o, std::move(signer), h.deps());
  w.submit(captureCommand("c1", "cap-1"));
  w.waitIdle();
  auto results = h.results();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].ok()) << results[0].error();
  ASSERT_TRUE(results[0].has_capture());
  EXPECT_EQ(results[0].capture().capture_id(), "cap-1");
  EXPECT_EQ(results[0].capture().evidence_id(), kSha);
  ASSERT_EQ(results[0].capture().collectors_size(), 1);
  EXPECT_EQ(results[0].capture().collectors(0).collector(), "fake");
  EXPECT_EQ(results[0].capture().collectors(0).status(), v1::COLLECTOR_STATUS_OK);
  EXPECT_FALSE(fs::exists(o.spool_dir / "cap-1.tar.gz"));
  EXPECT_FALSE(fs::exists(o.spool_dir / "cap-1.json"));
  EXPECT_EQ(fs::status(o.spool_dir).permissions() & fs::perms::all, fs::perms::owner_all);
  std::lock_guard lock(h.mu);
  EXPECT_EQ(h.collector_names, std::vector<std::string>{"test-hang"});
  std::vector<v1::CaptureStage> stages;
  for (const auto& m : h.sent) {
    if (m.has_progress()) {
      EXPECT_EQ(m.progress().command_id(), "c1");
      stages.push_back(m.progress().capture_stage());
    }
  }
  EXPECT_EQ(stages, (std::vector<v1::CaptureStage>{
                        v1::CAPTURE_STAGE_COLLECTING, v1::CAPTURE_STAGE_UPLOADING,
                        v1::CAPTURE_STAGE_UPLOADING, v1::CAPTURE_STAGE_STORED}));
}

TEST(CaptureWorker, FailedUploadKeepsTheBundleAndRetries) {
  auto signer = testSigner();
  ASSERT_TRUE(signer.ok()) << "a test identity could not sign: " << signer.status();
  TempDir dir;
  Harness h;
  h.upload_failures_left = 1;
  CaptureWorkerOptions o;
  o.spool_dir = dir.path();
  CaptureWorker w(o, std::move(signer), h.deps());
  w.waitIdle();  // the start-up retry (nothing spooled) is done
  w.submit(captureCommand("c1", "cap-1"));
  w.waitIdle();
  auto results = h.results();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].ok());
  EXPECT_EQ(results[0].error(),
            keptOnHostError(dir.path() / "cap-1.tar.gz", "UNAVAILABLE: controller down"));
  EXPECT_TRUE(fs::exists(dir.path() / "cap-1.tar.gz"));
  std::vector<std::string> problems;
  auto pending = pendingUploads(dir.path(), &problems);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].header.command_id(), "c1");
  EXPECT_EQ(pending[0].header.size(), 6u);

  // The same capture id again is refused while its bundle waits.
  w.submit(captureCommand("c2", "cap-1"));
  w.waitIdle();
  results = h.results();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_NE(results[1].error().find("already spooled"), std::string::npos) << results[1].error();

  w.retryPending();  // as on reconnect
  w.waitIdle();
  EXPECT_FALSE(fs::exists(dir.path() / "cap-1.tar.gz"));
  EXPECT_FALSE(fs::exists(dir.path() / "cap-1.json"));
  EXPECT_EQ(h.results().size(), 2u);  // the command was answered already
}

TEST(CaptureWorker, SpooledBundlesAreRetriedAtStartUp) {
  TempDir dir;
  SpooledBundle s;
  s.header = header("cap-old");
  ASSERT_TRUE(writeSidecar(dir.path(), s).ok());
  touch(dir.path() / "cap-old.tar.gz");
  Harness h;
  CaptureWorkerOptions o;
  o.spool_dir = dir.path();
  // No signer: captures fail, but uploads of what was captured before still go out.
  CaptureWorker w(o, absl::UnavailableError("no key"), h.deps());
  w.waitIdle();
  EXPECT_FALSE(fs::exists(dir.path() / "cap-old.tar.gz"));
  EXPECT_EQ(h.uploads, 1);
  w.submit(captureCommand("c1", "cap-2"));
  w.submit(captureCommand("c2", "../etc"));
  w.waitIdle();
  auto results = h.results();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_NE(results[0].error().find("signing key: no key"), std::string::npos)
      << results[0].error();
  EXPECT_NE(results[1].error().find("invalid capture id"), std::string::npos) << results[1].error();
}

TEST(CaptureWorker, RefusedBundleDoesNotHoldBackTheOthers) {
  for (auto code : {absl::StatusCode::kResourceExhausted, absl::StatusCode::kUnavailable}) {
    TempDir dir;
    Harness h;
    h.upload_failures_left = 1;
    h.failure_code = code;
    for (auto [id, at] : {std::pair<std::string, int64_t>{"cap-old", 1}, {"cap-new", 2}}) {
      SpooledBundle s;
      s.header = header(id);
      s.spooled_at_unix_ms = at;
      ASSERT_TRUE(writeSidecar(dir.path(), s).ok());
      touch(dir.path() / (id + ".tar.gz"));
    }
    CaptureWorkerOptions o;
    o.spool_dir = dir.path();
    CaptureWorker w(o, absl::UnavailableError("no key"), h.deps());
    w.waitIdle();
    std::lock_guard lock(h.mu);
    if (code == absl::StatusCode::kUnavailable) {
      // Unreachable: the rest waits for the next retry.
      EXPECT_EQ(h.uploaded, std::vector<std::string>{"cap-old"});
      EXPECT_TRUE(fs::exists(dir.path() / "cap-new.tar.gz"));
    } else {
      EXPECT_EQ(h.uploaded, (std::vector<std::string>{"cap-old", "cap-new"}));
      EXPECT_FALSE(fs::exists(dir.path() / "cap-new.tar.gz"));
    }
    EXPECT_TRUE(fs::exists(dir.path() / "cap-old.tar.gz"));
  }
}

TEST(CaptureWorker, PeriodicRetry) {
  TempDir dir;
  Harness h;
  h.upload_failures_left = 1;
  SpooledBundle s;
  s.header = header("cap-old");
  ASSERT_TRUE(writeSidecar(dir.path(), s).ok());
  touch(dir.path() / "cap-old.tar.gz");
  CaptureWorkerOptions o;
  o.spool_dir = dir.path();
  o.retry_every = std::chrono::milliseconds(50);
  CaptureWorker w(o, absl::UnavailableError("no key"), h.deps());
  for (int i = 0; i < 100 && fs::exists(dir.path() / "cap-old.tar.gz"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(fs::exists(dir.path() / "cap-old.tar.gz"));
  std::lock_guard lock(h.mu);
  EXPECT_EQ(h.uploads, 2);
}

}  // namespace
}  // namespace bulkhead::agent
