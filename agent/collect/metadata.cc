// metadata.json: when and where the capture was taken (evidence/README.md). Times come from
// the agent's clock; boot time from btime of <proc_root>/stat, uptime from <proc_root>/uptime;
// the clock offset (agent minus controller, one-way latency included) from the request.
#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>

#include "agent/collect/collectors.h"
#include "agent/linux/proc_files.h"
#include "common/json.h"

namespace bulkhead::agent::collect {
namespace {

using nlohmann::json;

class MetadataCollector final : public Collector {
 public:
  std::string_view name() const override { return "metadata"; }
  std::chrono::milliseconds timeLimit() const override { return std::chrono::seconds(5); }
  uint64_t sizeCap() const override { return kMiB; }

  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    const auto now = std::chrono::system_clock::now();
    const int64_t now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    json m;
    m["capture_id"] = proc::utf8(ctx.capture_id);
    m["host_id"] = proc::utf8(ctx.host_id);
    m["hostname"] = proc::utf8(ctx.hostname);
    m["requested_by"] = proc::utf8(ctx.requested_by);
    m["reason"] = proc::utf8(ctx.reason);
    m["agent_version"] = proc::utf8(ctx.agent_version);
    m["collected_at_unix_ms"] = now_ms;
    m["collected_at_utc"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z",
                                        fmt::gmtime(std::chrono::system_clock::to_time_t(now)),
                                        static_cast<int>(now_ms % 1000));

    proc::ScopedFd root = proc::openDir(AT_FDCWD, ctx.proc_root.c_str());
    std::string text;
    json boot = nullptr;
    json uptime = nullptr;
    json pid_ns = nullptr;
    if (root.ok()) {
      if (proc::readFileAt(root.get(), "stat", 1 << 20, &text)) {
        if (auto btime = proc::parseBootTime(text)) boot = *btime * 1000;
      }
      if (proc::readFileAt(root.get(), "uptime", 4096, &text)) {
        if (auto up = proc::parseUptimeMs(text)) uptime = *up;
      }
      if (auto ns = proc::readLinkAt(root.get(), "self/ns/pid")) pid_ns = *ns;
    }
    if (boot.is_null()) sink.warn(fmt::format("no btime in {}/stat", ctx.proc_root.string()));
    if (uptime.is_null()) sink.warn(fmt::format("no {}/uptime", ctx.proc_root.string()));
    m["boot_time_unix_ms"] = boot;
    m["uptime_ms"] = uptime;
    m["pid_namespace"] = pid_ns;
    // The collecting agent itself, so readers can tell its controller channel from the host's
    // own connections (pid as seen in the agent's pid namespace).
    m["agent_pid"] = static_cast<int64_t>(::getpid());

    if (ctx.controller_time_unix_ms != 0) {
      m["controller_time_unix_ms"] = ctx.controller_time_unix_ms;
      m["clock_offset_ms"] = ctx.received_at_unix_ms - ctx.controller_time_unix_ms;
    } else {
      m["controller_time_unix_ms"] = nullptr;
      m["clock_offset_ms"] = nullptr;
    }

    utsname u{};
    if (::uname(&u) == 0) {
      m["uname"] = {{"sysname", proc::utf8(u.sysname)},
                    {"nodename", proc::utf8(u.nodename)},
                    {"release", proc::utf8(u.release)},
                    {"version", proc::utf8(u.version)},
                    {"machine", proc::utf8(u.machine)}};
    } else {
      m["uname"] = nullptr;
      sink.warn("uname(2) failed");
    }
    if (!sink.file("metadata.json", dumpJson(m, 2) + "\n")) {
      return absl::ResourceExhaustedError("metadata.json not written: the sink refused it");
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Collector> makeMetadataCollector() { return std::make_unique<MetadataCollector>(); }

}  // namespace bulkhead::agent::collect
