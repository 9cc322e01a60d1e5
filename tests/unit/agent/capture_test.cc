// agent/capture: the capture engine with fake collectors (time limits, size caps, errors, the
// binary budget, duplicate artifact names, progress, cancel) and the bundle it packs.
#include "agent/capture/capture.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "agent/collect/collectors.h"
#include "agent/collect/fd_table.h"
#include "common/format.h"
#include "evidence/bundle.h"
#include "evidence/summary.h"
#include "tests/unit/evidence/evidence_testing.h"

namespace bulkhead::agent {
namespace {

using collect::ArtifactSink;
using collect::CollectContext;
using collect::Collector;
using evidence::testing::Pki;
using evidence::testing::readFile;
using evidence::testing::sh;
using evidence::testing::TempDir;
using evidence::testing::writeFile;
using nlohmann::json;

class FakeCollector final : public Collector {
 public:
  using Body = std::function<absl::Status(const CollectContext&, ArtifactSink&)>;
  FakeCollector(std::string name, Body body, uint64_t cap = 64 * collect::kMiB,
                std::chrono::milliseconds limit = std::chrono::seconds(15))
      : name_(std::move(name)), body_(std::move(body)), cap_(cap), limit_(limit) {}
  std::string_view name() const override { return name_; }
  std::chrono::milliseconds timeLimit() const override { return limit_; }
  uint64_t sizeCap() const override { return cap_; }
  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    return body_(ctx, sink);
  }

 private:
  std::string name_;
  Body body_;
  uint64_t cap_;
  std::chrono::milliseconds limit_;
};

std::unique_ptr<Collector> fake(std::string name, FakeCollector::Body body,
                                uint64_t cap = 64 * collect::kMiB,
                                std::chrono::milliseconds limit = std::chrono::seconds(15)) {
  return std::make_unique<FakeCollector>(std::move(name), std::move(body), cap, limit);
}

// Writes `n` records to `artifact`.
FakeCollector::Body records(std::string artifact, int n) {
  return [artifact, n](const CollectContext&, ArtifactSink& sink) {
    for (int i = 0; i < n && !sink.stopped(); ++i) {
      if (!sink.record(artifact, json{{"i", i}})) break;
    }
    return absl::OkStatus();
  };
}

CaptureOptions options(const TempDir& dir) {
  CaptureOptions o;
  o.context.capture_id = "cap-20261123T170102Z-web-03-3f2a";
  o.context.host_id = "web-03";
  o.context.hostname = "web-03.lab";
  o.context.agent_version = "0.1.0";
  o.context.requested_by = "alice";
  o.context.reason = "INC-42";
  o.context.requested_at_unix_ms = 1700000000000;
  o.context.controller_time_unix_ms = 1700000000000;
  o.context.received_at_unix_ms = 1700000000250;
  o.spool_dir = dir.path() / "spool";
  return o;
}

const json* logOf(const CaptureOutcome& out, const std::string& name) {
  for (const auto& line : out.collectors) {
    if (line["collector"] == name) return &line;
  }
  return nullptr;
}

evidence::Verification verify(const CaptureOutcome& out) {
  auto v = evidence::verifyBundle(out.bundle, {out.sha256, Pki::get().ca.cert_pem, "web-03"});
  EXPECT_TRUE(v.ok()) << v.status();
  for (const auto& p : v->problems) ADD_FAILURE() << p.file << ": " << p.problem;
  return *v;
}

TEST(Capture, HangingCollectorIsCutAndTheCaptureCompletes) {
  TempDir dir;
  std::vector<std::unique_ptr<Collector>> cs;
  cs.push_back(fake("metadata", [](const CollectContext& ctx, ArtifactSink& sink) {
    sink.file("metadata.json", json{{"capture_id", ctx.capture_id}}.dump());
    return absl::OkStatus();
  }));
  cs.push_back(fake("hang", [](const CollectContext&, ArtifactSink& sink) {
    sink.record("hang.jsonl", json{{"before", "the hang"}});
    std::this_thread::sleep_for(std::chrono::seconds(30));  // ignores stopped()
    sink.record("hang.jsonl", json{{"after", "the hang"}});
    return absl::OkStatus();
  }));
  cs.push_back(fake("processes", records("processes.jsonl", 100)));
  cs.push_back(fake("sockets", records("sockets.jsonl", 50)));
  cs.push_back(fake("polite", [](const CollectContext&, ArtifactSink& sink) {
    // Honours stopped(): returns as soon as the limit passes.
    while (!sink.stopped()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return absl::OkStatus();
  }));
  CaptureOptions o = options(dir);
  o.collector_time_limit = std::chrono::milliseconds(300);
  auto t0 = std::chrono::steady_clock::now();
  auto out = runCapture(o, std::move(cs), Pki::signer(), nullptr);
  auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_LT(elapsed, std::chrono::seconds(2));
  ASSERT_EQ(out->collectors.size(), 5u);
  EXPECT_EQ(out->collectors[0]["collector"], "metadata");  // in the order started
  EXPECT_EQ((*logOf(*out, "hang"))["status"], "timeout");
  EXPECT_EQ((*logOf(*out, "hang"))["error"], "time limit 300 ms reached");
  EXPECT_EQ((*logOf(*out, "hang"))["duration_ms"], 300);
  EXPECT_EQ((*logOf(*out, "hang"))["records"], 1);
  EXPECT_EQ((*logOf(*out, "polite"))["status"], "timeout");
  EXPECT_EQ((*logOf(*out, "processes"))["status"], "ok");
  EXPECT_EQ((*logOf(*out, "processes"))["records"], 100);
  EXPECT_EQ((*logOf(*out, "sockets"))["status"], "ok");
  EXPECT_EQ((*logOf(*out, "metadata"))["status"], "ok");

  auto v = verify(*out);
  EXPECT_TRUE(v.signature_ok);
  EXPECT_EQ(v.manifest["capture_id"], "cap-20261123T170102Z-web-03-3f2a");
  EXPECT_EQ(v.manifest["requested_by"], "alice");
  EXPECT_EQ(v.manifest["clock_offset_ms"], 250);
  EXPECT_EQ(v.manifest["files"][0]["path"], "metadata.json");
  EXPECT_EQ(v.manifest["files"].back()["path"], "collection-log.jsonl");
  ASSERT_EQ(v.collector_errors.size(), 2u);
  EXPECT_EQ(v.collector_errors[0], "hang: timeout: time limit 300 ms reached");
  // Output up to the cut is kept.
  auto hang = evidence::readMember(out->bundle, "artifacts/hang.jsonl");
  ASSERT_TRUE(hang.ok()) << hang.status();
  EXPECT_EQ(*hang, "{\"before\":\"the hang\"}\n");
  auto log = evidence::readMember(out->bundle, "collection-log.jsonl");
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(std::count(log->begin(), log->end(), '\n'), 5);
  // The work directory is gone; the bundle is in the spool.
  EXPECT_FALSE(std::filesystem::exists(o.spool_dir / (o.context.capture_id + ".work")));
  EXPECT_EQ(out->bundle, o.spool_dir / (o.context.capture_id + ".tar.gz"));
  EXPECT_EQ(out->file_name, o.context.capture_id + ".tar.gz");
}

TEST(Capture, SizeCapTruncatesAndErrorsAreLogged) {
  TempDir dir;
  std::vector<std::unique_ptr<Collector>> cs;
  cs.push_back(fake("big", records("big.jsonl", 100000), 1000));
  cs.push_back(fake("broken", [](const CollectContext&, ArtifactSink& sink) {
    sink.record("broken.jsonl", json{{"partial", true}});
    sink.warn("pid 77: exited");
    return absl::UnavailableError("sock_diag: permission denied");
  }));
  cs.push_back(fake("throws", [](const CollectContext&, ArtifactSink&) -> absl::Status {
    throw std::runtime_error("bad json");
  }));
  auto out = runCapture(options(dir), std::move(cs), Pki::signer(), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  const json& big = *logOf(*out, "big");
  EXPECT_EQ(big["status"], "truncated");
  EXPECT_EQ(big["error"], "size cap of 1000 bytes reached");
  EXPECT_LE(big["bytes"].get<uint64_t>(), 1000u);
  EXPECT_GT(big["records"].get<uint64_t>(), 50u);
  const json& broken = *logOf(*out, "broken");
  EXPECT_EQ(broken["status"], "error");
  EXPECT_EQ(broken["error"], "sock_diag: permission denied");
  EXPECT_EQ(broken["warnings"], 1);
  EXPECT_EQ(broken["warning_samples"], json::array({"pid 77: exited"}));
  EXPECT_EQ((*logOf(*out, "throws"))["status"], "error");
  EXPECT_EQ((*logOf(*out, "throws"))["error"], "exception: bad json");

  auto v = verify(*out);
  EXPECT_EQ(v.collector_errors,
            (std::vector<std::string>{"big: truncated: size cap of 1000 bytes reached",
                                      "broken: error: sock_diag: permission denied",
                                      "throws: error: exception: bad json"}));
  auto partial = evidence::readMember(out->bundle, "artifacts/broken.jsonl");
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(*partial, "{\"partial\":true}\n");
}

TEST(Capture, BinariesShareABudgetAndAreDeduplicated) {
  TempDir dir;
  writeFile(dir / "small", std::string(1000, 's'));
  writeFile(dir / "large", std::string(2 * collect::kMiB, 'l'));
  writeFile(dir / "capped", std::string(5000, 'c'));
  auto results = std::make_shared<std::vector<std::string>>();
  const std::string d = dir.path().string();
  auto copier = [results, d](const CollectContext&, ArtifactSink& sink) {
    auto copy = [&](const std::string& file, const std::string& path, uint64_t cap) {
      if (sink.has(path)) {
        results->push_back(path + ": has");
        return;
      }
      int fd = ::open((d + "/" + file).c_str(), O_RDONLY | O_CLOEXEC);
      auto c = sink.copy(path, fd, cap);
      ::close(fd);
      results->push_back(c.ok() ? fmt::format("{}: {} bytes{} {}", path, c->bytes,
                                              c->truncated ? " truncated" : "", c->sha256)
                                : std::string(c.status().message()));
    };
    copy("small", "binaries/a", 100 * collect::kMiB);
    copy("small", "binaries/a", 100 * collect::kMiB);
    copy("large", "binaries/b", 100 * collect::kMiB);
    copy("capped", "binaries/c", 4096);
    return absl::OkStatus();
  };
  std::vector<std::unique_ptr<Collector>> cs;
  cs.push_back(fake("copier", copier));
  CaptureOptions o = options(dir);
  o.max_binaries_total = collect::kMiB;
  auto out = runCapture(o, std::move(cs), Pki::signer(), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(results->size(), 4u);
  EXPECT_EQ((*results)[0], "binaries/a: 1000 bytes " + evidence::sha256Hex(std::string(1000, 's')));
  EXPECT_EQ((*results)[1], "binaries/a: has");
  EXPECT_EQ((*results)[2],
            fmt::format("binaries/b: larger than the {} bytes left of the capture's binary "
                        "budget of {} bytes; not copied",
                        collect::kMiB - 1000, collect::kMiB));
  EXPECT_EQ((*results)[3],
            "binaries/c: 4096 bytes truncated " + evidence::sha256Hex(std::string(4096, 'c')));
  verify(*out);
  EXPECT_EQ(*evidence::readMember(out->bundle, "binaries/a"), std::string(1000, 's'));
  EXPECT_EQ(evidence::readMember(out->bundle, "binaries/b").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(evidence::readMember(out->bundle, "binaries/c")->size(), 4096u);
}

TEST(Capture, SameArtifactFromTwoCollectorsIsRenamed) {
  TempDir dir;
  std::vector<std::unique_ptr<Collector>> cs;
  cs.push_back(fake("one", records("x.jsonl", 1)));
  cs.push_back(fake("two", records("x.jsonl", 2)));
  cs.push_back(fake("bad", [](const CollectContext&, ArtifactSink& sink) {
    EXPECT_TRUE(sink.file("manifest.json", "{}"));  // refused with a warning, not a stop
    EXPECT_TRUE(sink.record("../escape.jsonl", json{{"a", 1}}));
    return absl::OkStatus();
  }));
  auto out = runCapture(options(dir), std::move(cs), Pki::signer(), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  auto v = verify(*out);
  EXPECT_EQ(*evidence::readMember(out->bundle, "artifacts/x.two.jsonl"), "{\"i\":0}\n{\"i\":1}\n");
  EXPECT_TRUE(evidence::readMember(out->bundle, "artifacts/x.jsonl").ok());
  EXPECT_EQ((*logOf(*out, "two"))["warnings"], 1);
  EXPECT_EQ((*logOf(*out, "bad"))["warnings"], 2);
  EXPECT_EQ((*logOf(*out, "bad"))["status"], "ok");
}

TEST(Capture, AtMostFourRunAtOnceAndProgressIsReported) {
  TempDir dir;
  auto running = std::make_shared<std::atomic<int>>(0);
  auto peak = std::make_shared<std::atomic<int>>(0);
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 10; ++i) {
    cs.push_back(
        fake(fmt::format("c{}", i), [running, peak, i](const CollectContext&, ArtifactSink& sink) {
          int now = ++*running;
          int p = peak->load();
          while (now > p && !peak->compare_exchange_weak(p, now)) {
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(30));
          sink.record(fmt::format("r{}.jsonl", i), json{{"x", 1}});
          --*running;
          return absl::OkStatus();
        }));
  }
  std::vector<std::string> collecting;
  uint64_t pack_calls = 0, pack_done = 0, pack_total = 0;
  auto out = runCapture(
      options(dir), std::move(cs), Pki::signer(),
      [&](v1::CaptureStage stage, const std::string& detail, uint64_t done, uint64_t total) {
        if (stage == v1::CAPTURE_STAGE_COLLECTING) {
          collecting.push_back(fmt::format("{}/{} {}", done, total, detail));
        } else if (stage == v1::CAPTURE_STAGE_PACKING) {
          ++pack_calls;
          pack_done = done;
          pack_total = total;
        }
      });
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(peak->load(), 4);
  ASSERT_EQ(collecting.size(), 10u);
  EXPECT_TRUE(collecting[9].starts_with("10/10 c")) << collecting[9];
  EXPECT_NE(collecting[0].find(" ok "), std::string::npos) << collecting[0];
  EXPECT_GE(pack_calls, 2u);
  EXPECT_EQ(pack_done, pack_total);
  verify(*out);
}

TEST(Capture, CancelStopsWithoutABundle) {
  TempDir dir;
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  std::vector<std::unique_ptr<Collector>> cs;
  cs.push_back(fake("slow", [cancel](const CollectContext&, ArtifactSink& sink) {
    cancel->store(true);
    while (!sink.stopped()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return absl::OkStatus();
  }));
  cs.push_back(fake("never", records("n.jsonl", 1)));
  CaptureOptions o = options(dir);
  o.cancel = cancel;
  auto out = runCapture(o, std::move(cs), Pki::signer(), nullptr);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(std::filesystem::exists(o.spool_dir / (o.context.capture_id + ".tar.gz")));
  EXPECT_FALSE(std::filesystem::exists(o.spool_dir / (o.context.capture_id + ".work")));
}

TEST(Capture, CollectorsOfOneCaptureShareOneFdTable) {
  TempDir dir;
  auto seen = std::make_shared<std::vector<const collect::FdTable*>>();
  auto mu = std::make_shared<std::mutex>();
  auto note = [seen, mu](const CollectContext& ctx, ArtifactSink&) {
    std::lock_guard lock(*mu);
    seen->push_back(ctx.fd_table.get());
    return absl::OkStatus();
  };
  auto o = options(dir);
  for (int capture = 0; capture < 2; ++capture) {
    o.context.capture_id = fmt::format("cap-fd-table-{}", capture);
    std::vector<std::unique_ptr<Collector>> cs;
    cs.push_back(fake("open_files", note));
    cs.push_back(fake("sockets", note));
    auto out = runCapture(o, std::move(cs), Pki::signer(), nullptr);
    ASSERT_TRUE(out.ok()) << out.status();
  }
  ASSERT_EQ(seen->size(), 4u);
  EXPECT_NE((*seen)[0], nullptr);
  EXPECT_EQ((*seen)[0], (*seen)[1]);  // one table per capture
  EXPECT_EQ((*seen)[2], (*seen)[3]);
  EXPECT_NE((*seen)[0], (*seen)[2]);       // a new one for the next capture
  EXPECT_EQ(o.context.fd_table, nullptr);  // the caller's context is left as it was
}

TEST(Capture, BadCaptureIdIsRefused) {
  TempDir dir;
  CaptureOptions o = options(dir);
  o.context.capture_id = "../x";
  EXPECT_EQ(runCapture(o, {}, Pki::signer(), nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Figures: the engine's share of a capture of a busy host (1,000 processes, 5,000 sockets,
// 20,000 open files): writing the records through the sinks and packing the bundle.
TEST(Capture, EngineTimeForABusyHost) {
  TempDir dir;
  std::vector<std::unique_ptr<Collector>> cs;
  cs.push_back(fake("processes", [](const CollectContext&, ArtifactSink& sink) {
    std::vector<std::string> environ;
    for (int e = 0; e < 20; ++e) environ.push_back(fmt::format("VAR{}=value-{}-xxxxxxxx", e, e));
    for (int pid = 1; pid <= 1000; ++pid) {
      sink.record("processes.jsonl",
                  json{{"pid", pid},
                       {"ppid", 1},
                       {"comm", "worker"},
                       {"cmdline", {"/usr/bin/worker", "--id", std::to_string(pid)}},
                       {"state", "S"},
                       {"uid", 1000},
                       {"euid", 1000},
                       {"gid", 1000},
                       {"user", "app"},
                       {"exe", "/usr/bin/worker"},
                       {"exe_deleted", false},
                       {"exe_memfd", false},
                       {"exe_sha256", std::string(64, 'f')},
                       {"cwd", "/srv/app"},
                       {"root", "/"},
                       {"environ", environ}});
    }
    return absl::OkStatus();
  }));
  cs.push_back(fake("sockets", [](const CollectContext&, ArtifactSink& sink) {
    for (int i = 0; i < 5000; ++i) {
      sink.record("sockets.jsonl",
                  json{{"family", "inet"},
                       {"protocol", "tcp"},
                       {"state", "established"},
                       {"local_address", "10.0.0.5"},
                       {"local_port", 8080},
                       {"remote_address", fmt::format("10.1.{}.{}", i / 250, i % 250)},
                       {"remote_port", 40000 + i},
                       {"inode", 100000 + i},
                       {"uid", 1000},
                       {"pids", {1 + i % 1000}},
                       {"comms", {"worker"}}});
    }
    return absl::OkStatus();
  }));
  cs.push_back(fake("open_files", [](const CollectContext&, ArtifactSink& sink) {
    for (int i = 0; i < 20000; ++i) {
      sink.record("open_files.jsonl", json{{"pid", 1 + i % 1000},
                                           {"fd", i % 20},
                                           {"target", fmt::format("socket:[{}]", 100000 + i)},
                                           {"deleted", false}});
    }
    return absl::OkStatus();
  }));
  auto t0 = std::chrono::steady_clock::now();
  auto out = runCapture(options(dir), std::move(cs), Pki::signer(), nullptr);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_TRUE(out.ok()) << out.status();
  uint64_t bytes = 0;
  for (const auto& c : out->collectors) bytes += c["bytes"].get<uint64_t>();
  std::printf(
      "busy host (1,000 processes, 5,000 sockets, 20,000 fds): engine %lld ms, "
      "%llu bytes of records, bundle %llu bytes\n",
      static_cast<long long>(ms), static_cast<unsigned long long>(bytes),
      static_cast<unsigned long long>(out->size));
  EXPECT_LT(ms, 2000);
  verify(*out);
}

// The real collectors on this machine (unprivileged: some may fail; the capture still
// completes, verifies and summarizes).
TEST(Capture, DefaultCollectorsOnThisHost) {
  TempDir dir;
  CaptureOptions o = options(dir);
  o.collector_time_limit = std::chrono::seconds(5);
  auto out = runCapture(o, collect::defaultCollectors(), Pki::signer(), nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  for (const auto& c : out->collectors) {
    std::printf("  %-12s %-9s %5lld ms %8llu bytes %s\n", c["collector"].get<std::string>().c_str(),
                c["status"].get<std::string>().c_str(),
                static_cast<long long>(c["duration_ms"].get<int64_t>()),
                static_cast<unsigned long long>(c["bytes"].get<uint64_t>()),
                c["error"].get<std::string>().c_str());
  }
  std::printf("real collectors: %lld ms, bundle %llu bytes, %u files\n",
              static_cast<long long>(out->duration_ms), static_cast<unsigned long long>(out->size),
              out->files);
  verify(*out);
  EXPECT_TRUE(evidence::readMember(out->bundle, "metadata.json").ok());
  auto summary = evidence::summarize(out->bundle);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ((*summary)["host_id"], "web-03");
}

// Figures: a capture recovering one 100 MiB incompressible binary (larger than 64 MiB).
TEST(Capture, LargeBinaryPackingThroughput) {
  TempDir dir;
  const uint64_t kSize = 100 * collect::kMiB;
  {
    std::ofstream f(dir / "implant", std::ios::binary);
    std::mt19937_64 rng(11);
    std::string block(collect::kMiB, '\0');
    for (uint64_t done = 0; done < kSize; done += block.size()) {
      for (size_t i = 0; i < block.size(); i += 8) {
        uint64_t v = rng();
        std::memcpy(&block[i], &v, 8);
      }
      f.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
  }
  const std::string implant = (dir / "implant").string();
  std::vector<std::unique_ptr<Collector>> cs;
  cs.push_back(fake("processes", [implant](const CollectContext& ctx, ArtifactSink& sink) {
    int fd = ::open(implant.c_str(), O_RDONLY | O_CLOEXEC);
    auto c = sink.copy("binaries/implant", fd, ctx.max_binary_bytes);
    ::close(fd);
    if (!c.ok()) return c.status();
    sink.record("processes.jsonl", json{{"pid", 4242}, {"recovered", "binaries/implant"}});
    return absl::OkStatus();
  }));
  CaptureOptions o = options(dir);
  o.context.max_binary_bytes = 200 * collect::kMiB;
  // Packing runs on the calling thread: its CPU time is what packing costs without the other
  // load on the machine.
  auto thread_cpu = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  };
  std::chrono::steady_clock::time_point pack_start;
  std::chrono::nanoseconds cpu_start{0};
  auto out = runCapture(o, std::move(cs), Pki::signer(),
                        [&](v1::CaptureStage stage, const std::string&, uint64_t done, uint64_t) {
                          if (stage != v1::CAPTURE_STAGE_PACKING || done != 0) return;
                          pack_start = std::chrono::steady_clock::now();
                          cpu_start = thread_cpu();
                        });
  auto pack_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - pack_start)
                     .count();
  auto cpu_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(thread_cpu() - cpu_start).count();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*logOf(*out, "processes"))["status"], "ok");
  std::printf(
      "capture with a 100 MiB incompressible binary: total %lld ms, packing %lld ms wall "
      "(%.1f MiB/s), %lld ms CPU (%.1f MiB/s), bundle %llu bytes, overhead %lld bytes "
      "(%.3f%%)\n",
      static_cast<long long>(out->duration_ms), static_cast<long long>(pack_ms),
      100.0 * 1000 / static_cast<double>(std::max<long long>(pack_ms, 1)),
      static_cast<long long>(cpu_ms),
      100.0 * 1000 / static_cast<double>(std::max<long long>(cpu_ms, 1)),
      static_cast<unsigned long long>(out->size), static_cast<long long>(out->size - kSize),
      100.0 * static_cast<double>(out->size - kSize) / static_cast<double>(kSize));
  auto v = verify(*out);
  bool listed = false;
  for (const auto& f : v.manifest["files"]) {
    if (f["path"] == "binaries/implant") listed = f["size"] == kSize;
  }
  EXPECT_TRUE(listed) << v.manifest.dump();
}

}  // namespace
}  // namespace bulkhead::agent
