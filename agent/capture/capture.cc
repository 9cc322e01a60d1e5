// The capture engine: collectors on their own threads (at most kMaxRunning at once) with time
// limits, each writing through a FileSink under <spool>/<capture_id>.work/, then one pass
// packing the work files into the signed bundle.
#include "agent/capture/capture.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "agent/capture/file_sink.h"
#include "agent/collect/fd_table.h"
#include "common/format.h"
#include "common/json.h"
#include "evidence/bundle.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;
using capture::FileSink;
using capture::SharedCopies;
using capture::SinkReport;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxRunning = 4;
constexpr uint64_t kPackProgressEvery = 4 * collect::kMiB;

int64_t nowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t msSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// Where collector threads report; shared with them so an abandoned thread never dangles.
struct Board {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<absl::Status>> results;
  std::vector<Clock::time_point> ended;  // when each result was posted
};

// One collector's run.
struct Run {
  std::shared_ptr<collect::Collector> collector;
  std::string name;
  std::shared_ptr<FileSink> sink;
  std::thread thread;
  std::chrono::milliseconds limit{0};
  Clock::time_point started;
  Clock::time_point deadline;
  int64_t started_unix_ms = 0;
  bool running = false;
  bool finished = false;
  nlohmann::json log;  // its collection-log line once finished
  SinkReport report;
};

nlohmann::json logLine(const Run& run, std::string_view status, std::string_view error,
                       int64_t duration_ms) {
  return nlohmann::json{{"collector", run.name},
                        {"status", status},
                        {"started_at_unix_ms", run.started_unix_ms},
                        {"duration_ms", duration_ms},
                        {"bytes", run.report.bytes},
                        {"records", run.report.records},
                        {"error", error},
                        {"warnings", run.report.warnings},
                        {"warning_samples", run.report.warning_samples}};
}

// "artifacts/x.jsonl" -> "artifacts/x.<collector>.jsonl": the name a second writer's file gets.
std::string renamedFor(const std::string& path, const std::string& collector) {
  size_t slash = path.rfind('/');
  size_t dot = path.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == slash + 1) {
    return fmt::format("{}.{}", path, collector);
  }
  return fmt::format("{}.{}{}", path.substr(0, dot), collector, path.substr(dot));
}

bool isPlainName(const std::string& name) {
  return evidence::isCleanMemberPath(name) && name.find('/') == std::string::npos;
}

}  // namespace

absl::StatusOr<CaptureOutcome> runCapture(
    const CaptureOptions& options, std::vector<std::unique_ptr<collect::Collector>> collectors,
    const evidence::Signer& signer, const CaptureProgress& progress) {
  const auto t0 = Clock::now();
  const auto& ctx = options.context;
  auto report = [&](v1::CaptureStage stage, const std::string& detail, uint64_t done,
                    uint64_t total) {
    if (progress) progress(stage, detail, done, total);
  };
  if (!isPlainName(ctx.capture_id)) {
    return absl::InvalidArgumentError(
        fmt::format("capture id \"{}\": not usable as a file name", ctx.capture_id));
  }
  if (options.spool_dir.empty()) return absl::InvalidArgumentError("capture: no spool directory");
  const fs::path work = options.spool_dir / (ctx.capture_id + ".work");
  const fs::path bundle_path = options.spool_dir / (ctx.capture_id + ".tar.gz");
  std::error_code ec;
  fs::remove_all(work, ec);  // left over from a capture that crashed
  fs::create_directories(work / "copies", ec);
  if (ec) {
    return absl::UnavailableError(
        fmt::format("capture: cannot create {}: {}", work.string(), ec.message()));
  }
  struct WorkCleanup {
    fs::path dir;
    ~WorkCleanup() {
      // An abandoned collector may still hold files open here: its sink is sealed, so it
      // creates nothing any more, and unlinking open files is fine.
      std::error_code e;
      fs::remove_all(dir, e);
      if (e) spdlog::warn("capture: cannot remove {}: {}", dir.string(), e.message());
    }
  } cleanup{work};

  // Threads keep what they touch alive: the context, the collector, the sink, the board.
  auto capture_ctx = std::make_shared<collect::CollectContext>(ctx);
  capture_ctx->fd_table = std::make_shared<collect::FdTable>();  // one /proc fd walk per capture
  std::shared_ptr<const collect::CollectContext> shared_ctx = std::move(capture_ctx);
  auto copies = std::make_shared<SharedCopies>(work / "copies", options.max_binaries_total);
  auto board = std::make_shared<Board>();
  std::vector<Run> runs(collectors.size());
  board->results.resize(runs.size());
  board->ended.resize(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    Run& run = runs[i];
    run.collector = std::shared_ptr<collect::Collector>(std::move(collectors[i]));
    run.name = std::string(run.collector->name());
    run.limit = options.collector_time_limit.count() > 0 ? options.collector_time_limit
                                                         : run.collector->timeLimit();
    run.sink =
        std::make_shared<FileSink>(copies, run.name, work / fmt::format("{}-{}", i, run.name),
                                   run.collector->sizeCap(), options.cancel);
  }
  const int64_t started_at = nowUnixMs();

  auto start = [&](size_t i) {
    Run& run = runs[i];
    run.started = Clock::now();
    run.started_unix_ms = nowUnixMs();
    run.deadline = run.started + run.limit;
    run.sink->setDeadline(run.deadline);
    run.running = true;
    try {
      run.thread = std::thread([board, collector = run.collector, sink = run.sink, shared_ctx, i] {
        absl::Status status;
        try {
          status = collector->collect(*shared_ctx, *sink);
        } catch (const std::exception& e) {
          status = absl::InternalError(fmt::format("exception: {}", e.what()));
        } catch (...) {
          status = absl::InternalError("unknown exception");
        }
        std::lock_guard lock(board->mu);
        board->results[i] = std::move(status);
        board->ended[i] = Clock::now();
        board->cv.notify_all();
      });
    } catch (const std::system_error& e) {
      std::lock_guard lock(board->mu);
      board->results[i] =
          absl::ResourceExhaustedError(fmt::format("could not start its thread: {}", e.what()));
      board->ended[i] = Clock::now();
    }
  };

  size_t next = 0;
  size_t finished = 0;
  bool cancelled = false;
  auto finish = [&](Run& run, std::string_view status, std::string_view error,
                    int64_t duration_ms) {
    run.running = false;
    run.finished = true;
    run.log = logLine(run, status, error, duration_ms);
    ++finished;
    report(v1::CAPTURE_STAGE_COLLECTING, fmt::format("{} {} {} ms", run.name, status, duration_ms),
           finished, runs.size());
  };
  std::unique_lock lock(board->mu);
  while (finished < runs.size()) {
    size_t running = 0;
    for (const Run& r : runs) running += r.running ? 1 : 0;
    while (running < kMaxRunning && next < runs.size() && !cancelled) {
      lock.unlock();
      start(next++);
      lock.lock();
      ++running;
    }
    // Collect what finished or ran out of time.
    auto wake = Clock::time_point::max();
    bool any = false;
    for (size_t i = 0; i < runs.size(); ++i) {
      Run& run = runs[i];
      if (!run.running) continue;
      if (board->results[i].has_value()) {
        absl::Status status = *board->results[i];
        const auto ended = board->ended[i];
        lock.unlock();
        if (run.thread.joinable()) run.thread.join();
        run.report = run.sink->seal();
        const int64_t ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(ended - run.started).count();
        if (ended >= run.deadline) {
          // It noticed stopped() and returned: its output was cut all the same.
          std::string error = fmt::format("time limit {} ms reached", run.limit.count());
          if (!status.ok()) error = fmt::format("{}; then: {}", error, status);
          finish(run, "timeout", error, ms);
        } else if (!status.ok()) {
          finish(run, "error", fmt::format("{}", status), ms);
        } else if (run.report.truncated) {
          finish(run, "truncated", run.report.cap_error, ms);
        } else {
          finish(run, "ok", "", ms);
        }
        lock.lock();
        any = true;
      } else if (Clock::now() >= run.deadline ||
                 (options.cancel != nullptr && options.cancel->load())) {
        // Cut: its output so far is kept; the thread is abandoned (it holds only shared state).
        const bool cut_by_cancel = Clock::now() < run.deadline;
        lock.unlock();
        run.report = run.sink->seal();
        run.thread.detach();
        if (cut_by_cancel) {
          finish(run, "error", "capture cancelled", msSince(run.started));
        } else {
          spdlog::warn(
              "capture {}: collector {} cut at its time limit of {} ms; thread "
              "abandoned",
              ctx.capture_id, run.name, run.limit.count());
          finish(run, "timeout", fmt::format("time limit {} ms reached", run.limit.count()),
                 run.limit.count());
        }
        lock.lock();
        any = true;
      } else {
        wake = std::min(wake, run.deadline);
      }
    }
    if (options.cancel != nullptr && options.cancel->load() && !cancelled) {
      cancelled = true;
      for (; next < runs.size(); ++next) {
        runs[next].report = runs[next].sink->seal();
        lock.unlock();
        finish(runs[next], "error", "capture cancelled before it started", 0);
        lock.lock();
      }
      continue;
    }
    if (any || finished == runs.size()) continue;
    if (options.cancel != nullptr)
      wake = std::min(wake, Clock::now() + std::chrono::milliseconds(50));
    board->cv.wait_until(lock, wake, [&] {
      for (size_t i = 0; i < runs.size(); ++i) {
        if (runs[i].running && board->results[i].has_value()) return true;
      }
      return false;
    });
  }
  lock.unlock();
  if (cancelled) {
    return absl::CancelledError(fmt::format("capture {}: cancelled", ctx.capture_id));
  }
  const int64_t finished_at = nowUnixMs();

  // Pack: metadata.json first, each collector's files in collector order, the recovered
  // binaries, the collection log.
  std::vector<std::pair<std::string, fs::path>> members;
  std::set<std::string> taken = {"collection-log.jsonl"};
  for (Run& run : runs) {
    for (auto& [path, disk] : run.report.outputs) {
      std::string name = path;
      if (!taken.insert(name).second) {
        name = renamedFor(path, run.name);
        for (int n = 2; !taken.insert(name).second; ++n) {
          name = renamedFor(path, fmt::format("{}{}", run.name, n));
        }
        std::string warning = fmt::format(
            "engine: {} was already written by another collector; packed as {}", path, name);
        spdlog::warn("capture {}: {}", ctx.capture_id, warning);
        run.log["warnings"] = run.log["warnings"].get<uint64_t>() + 1;
        if (run.log["warning_samples"].size() < capture::kMaxWarningSamples) {
          run.log["warning_samples"].push_back(warning);
        }
      }
      members.emplace_back(name, disk);
    }
  }
  std::stable_partition(members.begin(), members.end(),
                        [](const auto& m) { return m.first == "metadata.json"; });
  for (auto& copied : copies->completed()) {
    if (taken.insert(copied.first).second) members.push_back(std::move(copied));
  }
  nlohmann::json log_lines = nlohmann::json::array();
  std::string log_text;
  for (const Run& run : runs) {
    log_lines.push_back(run.log);
    log_text += dumpJson(run.log);
    log_text += '\n';
  }
  uint64_t total = log_text.size();
  for (const auto& m : members) {
    std::error_code size_ec;
    uintmax_t size = fs::file_size(m.second, size_ec);
    if (!size_ec) total += size;
  }

  nlohmann::json fields = {{"capture_id", ctx.capture_id},
                           {"host_id", ctx.host_id},
                           {"hostname", ctx.hostname},
                           {"requested_by", ctx.requested_by},
                           {"reason", ctx.reason},
                           {"requested_at_unix_ms", ctx.requested_at_unix_ms},
                           {"started_at_unix_ms", started_at},
                           {"finished_at_unix_ms", finished_at},
                           {"clock_offset_ms", ctx.controller_time_unix_ms != 0
                                                   ? nlohmann::json(ctx.received_at_unix_ms -
                                                                    ctx.controller_time_unix_ms)
                                                   : nlohmann::json(nullptr)},
                           {"agent_version", ctx.agent_version}};
  auto writer = evidence::BundleWriter::create(bundle_path, ctx.capture_id, std::move(fields));
  if (!writer.ok()) return writer.status();
  report(v1::CAPTURE_STAGE_PACKING, "", 0, total);
  // The manifest, signature and certificate come on top of `total`: done is capped at it.
  (*writer)->setProgress(
      [&](uint64_t bytes) { report(v1::CAPTURE_STAGE_PACKING, "", std::min(bytes, total), total); },
      kPackProgressEvery);
  for (const auto& [name, disk] : members) {
    if (auto s = (*writer)->addFile(name, disk); !s.ok()) return s;
  }
  if (auto s = (*writer)->addBytes("collection-log.jsonl", log_text); !s.ok()) return s;
  auto result = (*writer)->finish(signer);
  if (!result.ok()) return result.status();

  CaptureOutcome outcome;
  outcome.bundle = bundle_path;
  outcome.file_name = bundle_path.filename().string();
  outcome.sha256 = result->sha256;
  outcome.size = result->size;
  outcome.manifest_sha256 = result->manifest_sha256;
  outcome.files = result->files;
  outcome.duration_ms = msSince(t0);
  outcome.collectors = std::move(log_lines);
  return outcome;
}

}  // namespace bulkhead::agent
