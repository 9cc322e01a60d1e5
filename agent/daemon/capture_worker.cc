#include "agent/daemon/capture_worker.h"

#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>

#include "agent/collect/collectors.h"
#include "agent/linux/proc_files.h"
#include "common/format.h"
#include "common/identity.h"
#include "common/json.h"
#include "common/tls/tls.h"

namespace bulkhead::agent {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kSidecarSuffix[] = ".json";

// A name usable as a file name in the spool directory.
bool isPlainName(const std::string& s) {
  if (s.empty() || s.size() > 200 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
}

v1::CommandResult failure(const std::string& command_id, const std::string& error) {
  v1::CommandResult r;
  r.set_command_id(command_id);
  r.set_ok(false);
  r.set_error(error);
  return r;
}

class TestHangCollector final : public collect::Collector {
 public:
  std::string_view name() const override { return "test-hang"; }
  absl::Status collect(const collect::CollectContext&, collect::ArtifactSink&) override {
    // Ignores sink.stopped() on purpose: proves the engine cuts a collector that hangs.
    std::this_thread::sleep_for(std::chrono::hours(1));
    return absl::OkStatus();
  }
};

}  // namespace

std::string sidecarJson(const v1::EvidenceHeader& h, int64_t spooled_at_unix_ms) {
  json j{{"capture_id", h.capture_id()}, {"size", h.size()},
         {"sha256", h.sha256()},         {"file_name", h.file_name()},
         {"command_id", h.command_id()}, {"spooled_at_unix_ms", spooled_at_unix_ms}};
  return dumpJson(j) + "\n";
}

absl::StatusOr<SpooledBundle> parseSidecar(const fs::path& spool_dir, const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  SpooledBundle s;
  auto str = [&](const char* key) -> absl::StatusOr<std::string> {
    if (!j.contains(key) || !j[key].is_string()) {
      return absl::InvalidArgumentError(fmt::format("\"{}\": missing or not a string", key));
    }
    return j[key].get<std::string>();
  };
  auto id = str("capture_id");
  if (!id.ok()) return id.status();
  if (!isPlainName(*id)) {
    return absl::InvalidArgumentError(fmt::format("\"capture_id\": invalid value \"{}\"", *id));
  }
  auto file = str("file_name");
  if (!file.ok()) return file.status();
  if (!isPlainName(*file)) {
    return absl::InvalidArgumentError(fmt::format("\"file_name\": invalid value \"{}\"", *file));
  }
  auto sha = str("sha256");
  if (!sha.ok()) return sha.status();
  if (sha->size() != 64 || !std::all_of(sha->begin(), sha->end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
      })) {
    return absl::InvalidArgumentError(fmt::format("\"sha256\": invalid value \"{}\"", *sha));
  }
  if (!j.contains("size") || !j["size"].is_number_unsigned()) {
    return absl::InvalidArgumentError("\"size\": missing or not a byte count");
  }
  s.header.set_capture_id(*id);
  s.header.set_file_name(*file);
  s.header.set_sha256(*sha);
  s.header.set_size(j["size"].get<uint64_t>());
  if (j.contains("command_id") && j["command_id"].is_string()) {
    s.header.set_command_id(j["command_id"].get<std::string>());
  }
  if (j.contains("spooled_at_unix_ms") && j["spooled_at_unix_ms"].is_number_integer()) {
    s.spooled_at_unix_ms = j["spooled_at_unix_ms"].get<int64_t>();
  }
  s.bundle = spool_dir / *file;
  s.sidecar = spool_dir / (*id + kSidecarSuffix);
  return s;
}

absl::Status writeSidecar(const fs::path& spool_dir, const SpooledBundle& s) {
  return writeFileAtomic(spool_dir / (s.header.capture_id() + kSidecarSuffix),
                         sidecarJson(s.header, s.spooled_at_unix_ms), 0600);
}

std::vector<SpooledBundle> pendingUploads(const fs::path& spool_dir,
                                          std::vector<std::string>* problems) {
  std::vector<SpooledBundle> out;
  std::error_code ec;
  for (fs::directory_iterator it(spool_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() != kSidecarSuffix || !it->is_regular_file()) continue;
    auto text = readFile(p);
    if (!text.ok()) {
      problems->push_back(fmt::format("{}: {}", p.string(), text.status()));
      continue;
    }
    auto s = parseSidecar(spool_dir, *text);
    if (!s.ok()) {
      problems->push_back(fmt::format("{}: {}", p.string(), s.status()));
      continue;
    }
    if (s->sidecar != p) {
      problems->push_back(fmt::format("{}: names capture {} (expected {})", p.string(),
                                      s->header.capture_id(), s->sidecar.filename().string()));
      continue;
    }
    if (!fs::exists(s->bundle)) {
      problems->push_back(fmt::format("{}: bundle {} is missing", p.string(), s->bundle.string()));
      continue;
    }
    out.push_back(*std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const SpooledBundle& a, const SpooledBundle& b) {
    if (a.spooled_at_unix_ms != b.spooled_at_unix_ms) {
      return a.spooled_at_unix_ms < b.spooled_at_unix_ms;
    }
    return a.header.capture_id() < b.header.capture_id();
  });
  return out;
}

void removeSpooled(const SpooledBundle& s) {
  std::error_code ec;
  fs::remove(s.bundle, ec);
  fs::remove(s.sidecar, ec);
}

v1::CaptureResult captureResult(const v1::EvidenceHeader& h, const v1::EvidenceReceipt& receipt,
                                int64_t duration_ms, const json& collectors) {
  v1::CaptureResult out;
  out.set_capture_id(h.capture_id());
  out.set_evidence_id(receipt.evidence_id());
  out.set_sha256(h.sha256());
  out.set_size(h.size());
  out.set_duration_ms(duration_ms);
  out.set_already_stored(receipt.already_stored());
  if (!collectors.is_array()) return out;
  for (const json& line : collectors) {
    v1::CollectorRun& run = *out.add_collectors();
    run.set_collector(proc::utf8(jsonStringOr(line, "collector", "")));
    const std::string status = jsonStringOr(line, "status", "");
    run.set_status(status == "ok"          ? v1::COLLECTOR_STATUS_OK
                   : status == "error"     ? v1::COLLECTOR_STATUS_ERROR
                   : status == "timeout"   ? v1::COLLECTOR_STATUS_TIMEOUT
                   : status == "truncated" ? v1::COLLECTOR_STATUS_TRUNCATED
                                           : v1::COLLECTOR_STATUS_UNSPECIFIED);
    run.set_started_at_unix_ms(jsonIntOr(line, "started_at_unix_ms", 0));
    run.set_duration_ms(jsonIntOr(line, "duration_ms", 0));
    run.set_bytes(jsonUintOr(line, "bytes", 0));
    run.set_records(jsonUintOr(line, "records", 0));
    run.set_error(proc::utf8(jsonStringOr(line, "error", "")));
    run.set_warnings(jsonUintOr(line, "warnings", 0));
    if (const json* samples = jsonArray(line, "warning_samples")) {
      for (const json& w : *samples) {
        if (w.is_string()) run.add_warning_samples(proc::utf8(w.get<std::string>()));
      }
    }
  }
  return out;
}

std::string keptOnHostError(const fs::path& bundle, const std::string& why) {
  return fmt::format("evidence kept on the host at {}; upload failed: {}; will retry",
                     bundle.string(), why);
}

std::unique_ptr<collect::Collector> makeTestHangCollector() {
  return std::make_unique<TestHangCollector>();
}

CaptureWorker::CaptureWorker(CaptureWorkerOptions options, absl::StatusOr<evidence::Signer> signer,
                             Deps deps)
    : options_(std::move(options)), signer_(std::move(signer)), deps_(std::move(deps)) {
  queueRetry();  // what an earlier run left spooled
}

CaptureWorker::~CaptureWorker() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  idle_cv_.notify_all();
  first_thread_.stop();
  thread_.stop();
}

void CaptureWorker::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    ++pending_;
  }
  bool posted = thread_.post([this, fn = std::move(fn)] {
    bool skip = false;
    {
      std::lock_guard lock(mu_);
      skip = stopping_;
    }
    if (!skip) fn();
    std::lock_guard lock(mu_);
    --pending_;
    idle_cv_.notify_all();
  });
  if (!posted) {
    std::lock_guard lock(mu_);
    --pending_;
    idle_cv_.notify_all();
  }
}

void CaptureWorker::submit(const v1::Command& command) {
  post([this, command] {
    capture(command);
    // The collectors' threads leave freed heap in glibc arenas; give it back so an agent
    // that captured once does not stay larger for the rest of its life.
    ::malloc_trim(0);
  });
}

void CaptureWorker::retryPending() { queueRetry(); }

void CaptureWorker::queueRetry() {
  {
    std::lock_guard lock(mu_);
    if (retry_queued_) return;
    retry_queued_ = true;
  }
  post([this] {
    {
      std::lock_guard lock(mu_);
      retry_queued_ = false;
    }
    retryAll();
    armPeriodicRetry();
  });
}

void CaptureWorker::armPeriodicRetry() {
  const uint64_t generation = ++retry_generation_;
  thread_.after(options_.retry_every, [this, generation] {
    if (generation == retry_generation_) queueRetry();
  });
}

void CaptureWorker::waitIdle() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [this] { return stopping_ || pending_ == 0; });
}

void CaptureWorker::progress(const std::string& command_id, v1::CaptureStage stage,
                             const std::string& detail, uint64_t done, uint64_t total) {
  v1::AgentMessage m;
  auto* p = m.mutable_progress();
  p->set_command_id(command_id);
  p->set_capture_stage(stage);
  p->set_detail(detail);
  p->set_done(done);
  p->set_total(total);
  deps_.send(m);
}

void CaptureWorker::answer(const v1::CommandResult& r) {
  if (!r.ok()) spdlog::warn("capture {} failed: {}", r.command_id(), r.error());
  v1::AgentMessage m;
  *m.mutable_command_result() = r;
  deps_.send(m);
}

absl::StatusOr<CaptureWorker::Collected> CaptureWorker::collectBundle(
    const v1::Command& c, const v1::CaptureState& req, const std::vector<int>& pids,
    std::shared_ptr<const std::atomic<bool>> cancel, bool send_progress) {
  const std::string& capture_id = req.capture_id();
  if (!isPlainName(capture_id)) {
    return absl::InvalidArgumentError(
        fmt::format("capture: invalid capture id \"{}\"", capture_id));
  }
  if (!signer_.ok()) {
    return absl::FailedPreconditionError(
        fmt::format("capture refused: cannot load the agent's signing key: {}", signer_.status()));
  }
  std::error_code ec;
  fs::create_directories(options_.spool_dir, ec);
  if (ec || ::chmod(options_.spool_dir.c_str(), 0700) != 0) {
    return absl::UnavailableError(fmt::format("capture: cannot prepare the spool directory {}: {}",
                                              options_.spool_dir.string(),
                                              ec ? ec.message() : std::strerror(errno)));
  }
  if (fs::exists(options_.spool_dir / (capture_id + kSidecarSuffix))) {
    return absl::AlreadyExistsError(fmt::format(
        "capture {} is already spooled on this host and waiting for upload; not captured again",
        capture_id));
  }
  spdlog::info(
      "capture {} ({}) requested by {}: {}{}", capture_id, c.id(), c.requested_by(), c.reason(),
      pids.empty() ? "" : fmt::format(" (capture-first: {} stopped processes)", pids.size()));
  int64_t received_at = deps_.now_unix_ms();
  CaptureOptions o;
  o.context.capture_id = capture_id;
  o.context.host_id = options_.host_id;
  o.context.hostname = options_.hostname;
  o.context.agent_version = options_.agent_version;
  o.context.requested_by = c.requested_by();
  o.context.reason = c.reason();
  o.context.requested_at_unix_ms = req.controller_time_unix_ms();
  o.context.controller_time_unix_ms = req.controller_time_unix_ms();
  o.context.received_at_unix_ms = received_at;
  o.context.target_pids = pids;
  if (req.max_binary_bytes() != 0) o.context.max_binary_bytes = req.max_binary_bytes();
  o.collector_time_limit = std::chrono::milliseconds(req.collector_time_limit_ms());
  o.spool_dir = options_.spool_dir;
  o.cancel = std::move(cancel);

  auto collectors = deps_.collectors();
  // The stopped processes first: they are what the capture is for.
  if (!pids.empty()) collectors.insert(collectors.begin(), collect::makeStoppedProcessCollector());
  if (options_.test_hang_collector) collectors.push_back(makeTestHangCollector());
  // Progress is informational: every collector, and for byte stages (packing) at most one
  // message per 250 ms plus the end; never the same (stage, done, total) twice in a row.
  v1::CaptureStage last_stage = v1::CAPTURE_STAGE_UNSPECIFIED;
  uint64_t last_done = 0;
  uint64_t last_total = 0;
  auto last_sent = std::chrono::steady_clock::time_point{};
  CaptureProgress on_progress = [&](v1::CaptureStage stage, const std::string& detail,
                                    uint64_t done, uint64_t total) {
    if (!send_progress) return;
    auto now = std::chrono::steady_clock::now();
    bool same_stage = stage == last_stage;
    if (same_stage && done == last_done && total == last_total) return;
    if (same_stage && done != total && stage != v1::CAPTURE_STAGE_COLLECTING &&
        now - last_sent < std::chrono::milliseconds(250)) {
      return;
    }
    last_stage = stage;
    last_done = done;
    last_total = total;
    last_sent = now;
    progress(c.id(), stage, detail, done, total);
  };
  auto outcome = deps_.run_capture(o, std::move(collectors), *signer_, on_progress);
  if (!outcome.ok()) {
    return absl::Status(outcome.status().code(),
                        fmt::format("capture {} failed: {}", capture_id, outcome.status()));
  }
  Collected out;
  SpooledBundle& spooled = out.spooled;
  spooled.bundle = outcome->bundle;
  spooled.sidecar = options_.spool_dir / (capture_id + kSidecarSuffix);
  spooled.header.set_capture_id(capture_id);
  spooled.header.set_size(outcome->size);
  spooled.header.set_sha256(outcome->sha256);
  spooled.header.set_file_name(outcome->file_name);
  spooled.header.set_command_id(c.id());
  spooled.spooled_at_unix_ms = deps_.now_unix_ms();
  if (auto s = writeSidecar(options_.spool_dir, spooled); !s.ok()) {
    // The bundle is still uploaded now; only a retry after a failure depends on the sidecar.
    spdlog::error("capture {}: cannot write its sidecar: {}", capture_id, s);
  }
  spdlog::info("capture {}: bundle {} ({} bytes, {} files) in {} ms", capture_id,
               outcome->bundle.string(), outcome->size, outcome->files, outcome->duration_ms);
  out.outcome = *std::move(outcome);
  return out;
}

void CaptureWorker::capture(const v1::Command& c) {
  auto collected = collectBundle(c, c.capture(), {}, nullptr, true);
  if (!collected.ok()) {
    answer(failure(c.id(), std::string(collected.status().message())));
    return;
  }
  const SpooledBundle& spooled = collected->spooled;
  auto receipt = uploadSpooled(spooled, c.id());
  if (!receipt.ok()) {
    answer(
        failure(c.id(), keptOnHostError(spooled.bundle, std::string(receipt.status().message()))));
    return;
  }
  v1::CommandResult r;
  r.set_command_id(c.id());
  r.set_ok(true);
  *r.mutable_capture() = captureResult(spooled.header, *receipt, collected->outcome.duration_ms,
                                       collected->outcome.collectors);
  answer(r);
}

absl::Status CaptureWorker::collect(const v1::Command& command, const v1::CaptureState& state,
                                    const std::vector<int>& pids, std::chrono::milliseconds limit) {
  // Shared with the task: the caller may stop waiting (limit) before the task ends.
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;    // GUARDED_BY(mu)
    absl::Status status;  // GUARDED_BY(mu)
  };
  auto wait = std::make_shared<Wait>();
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto finish = [wait](absl::Status s) {
    std::lock_guard lock(wait->mu);
    wait->done = true;
    wait->status = std::move(s);
    wait->cv.notify_all();
  };
  bool posted = first_thread_.post([this, command, state, pids, cancel, finish] {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return finish(absl::UnavailableError("the agent is stopping"));
    }
    auto collected = collectBundle(command, state, pids, cancel, false);
    if (!collected.ok()) return finish(collected.status());
    if (cancel->load()) {
      // Finished just after the caller gave up: keep it spooled; the retries upload it.
      return finish(absl::DeadlineExceededError("finished after the limit"));
    }
    {
      std::lock_guard lock(mu_);
      collected_[state.capture_id()] = *std::move(collected);
    }
    finish(absl::OkStatus());
  });
  if (!posted) return absl::UnavailableError("the agent is stopping");
  std::unique_lock lock(wait->mu);
  if (!wait->cv.wait_for(lock, limit, [&] { return wait->done; })) {
    cancel->store(true);
    return absl::DeadlineExceededError(fmt::format(
        "capture {} not finished within {} ms: cancelled", state.capture_id(), limit.count()));
  }
  return wait->status;
}

absl::StatusOr<v1::CaptureResult> CaptureWorker::upload(const v1::Command& command,
                                                        const v1::CaptureState& state) {
  std::optional<Collected> collected;
  {
    std::lock_guard lock(mu_);
    auto it = collected_.find(state.capture_id());
    if (it != collected_.end()) {
      collected = std::move(it->second);
      collected_.erase(it);
    }
  }
  if (!collected) {
    return absl::NotFoundError(fmt::format("capture {}: nothing collected", state.capture_id()));
  }
  // On the capture thread, in order with the retries (which may have taken the bundle first:
  // then its content address is the evidence id).
  auto promise = std::make_shared<std::promise<absl::StatusOr<v1::EvidenceReceipt>>>();
  auto future = promise->get_future();
  const SpooledBundle spooled = collected->spooled;
  post([this, promise, spooled, id = command.id()] {
    if (!fs::exists(spooled.bundle)) {
      v1::EvidenceReceipt already;
      already.set_evidence_id(spooled.header.sha256());
      already.set_already_stored(true);
      promise->set_value(already);
      return;
    }
    promise->set_value(uploadSpooled(spooled, id));
  });
  absl::StatusOr<v1::EvidenceReceipt> receipt;
  try {
    receipt = future.get();
  } catch (const std::future_error&) {  // dropped unrun: the agent is stopping
    receipt = absl::UnavailableError("the agent is stopping");
  }
  if (!receipt.ok()) {
    return absl::Status(receipt.status().code(),
                        keptOnHostError(spooled.bundle, std::string(receipt.status().message())));
  }
  return captureResult(spooled.header, *receipt, collected->outcome.duration_ms,
                       collected->outcome.collectors);
}

absl::StatusOr<v1::EvidenceReceipt> CaptureWorker::uploadSpooled(const SpooledBundle& s,
                                                                 const std::string& command_id) {
  uint64_t total = s.header.size();
  auto on_progress = [&](uint64_t done, uint64_t all) {
    if (!command_id.empty()) progress(command_id, v1::CAPTURE_STAGE_UPLOADING, "", done, all);
  };
  if (!command_id.empty()) progress(command_id, v1::CAPTURE_STAGE_UPLOADING, "", 0, total);
  auto receipt = deps_.upload(s.bundle, s.header, on_progress);
  if (!receipt.ok()) {
    spdlog::warn("evidence {} ({} bytes) not uploaded, kept at {}: {}", s.header.capture_id(),
                 total, s.bundle.string(), receipt.status());
    return receipt;
  }
  if (!receipt->evidence_id().empty() && receipt->evidence_id() != s.header.sha256()) {
    // The controller's content address must be the bytes' hash: keep the bundle.
    return absl::DataLossError(fmt::format("controller stored it as {}, expected {}",
                                           receipt->evidence_id(), s.header.sha256()));
  }
  removeSpooled(s);
  spdlog::info("evidence {} uploaded: evidence id {}{}", s.header.capture_id(),
               receipt->evidence_id(), receipt->already_stored() ? " (already stored)" : "");
  if (!command_id.empty()) {
    progress(command_id, v1::CAPTURE_STAGE_STORED, receipt->evidence_id(), total, total);
  }
  return receipt;
}

void CaptureWorker::retryAll() {
  std::vector<std::string> problems;
  auto pending = pendingUploads(options_.spool_dir, &problems);
  for (const auto& p : problems) spdlog::warn("evidence spool: {}", p);
  for (const auto& s : pending) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    spdlog::info("retrying the upload of evidence {} ({} bytes, spooled at {})",
                 s.header.capture_id(), s.header.size(), s.bundle.string());
    // No progress: the command was answered when its first upload failed. The header keeps
    // the command id so the controller can tie the bundle to its request.
    auto receipt = uploadSpooled(s, "");
    // Unreachable: the others would fail too, wait for the next retry. A bundle this controller
    // refuses (e.g. too large) must not hold back the ones behind it.
    if (!receipt.ok() &&
        (absl::IsUnavailable(receipt.status()) || absl::IsDeadlineExceeded(receipt.status()) ||
         absl::IsCancelled(receipt.status()))) {
      break;
    }
  }
}

}  // namespace bulkhead::agent
