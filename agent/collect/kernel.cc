// Kernel collector: loaded modules (/proc/modules), the taint mask decoded, the kernel command
// line, /etc/ld.so.preload entries and the BPF objects pinned under /sys/fs/bpf.
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>

#include "absl/strings/numbers.h"
#include "agent/collect/collectors.h"
#include "agent/collect/host_files.h"
#include "agent/linux/proc_files.h"
#include "common/format.h"
#include "common/json.h"

namespace bulkhead::agent::collect {
namespace {

constexpr uint64_t kProcFileCap = 4 * kMiB;

struct TaintFlag {
  char letter;
  const char* meaning;
};

// The kernel's taint bits in order (Documentation/admin-guide/tainted-kernels.rst).
constexpr TaintFlag kTaintFlags[] = {
    {'P', "proprietary module was loaded"},
    {'F', "module was force loaded"},
    {'S', "kernel running on an out of specification system"},
    {'R', "module was force unloaded"},
    {'M', "processor reported a Machine Check Exception (MCE)"},
    {'B', "bad page referenced or some unexpected page flags"},
    {'U', "taint requested by userspace application"},
    {'D', "kernel died recently, i.e. there was an OOPS or BUG"},
    {'A', "ACPI table overridden by user"},
    {'W', "kernel issued warning"},
    {'C', "staging driver was loaded"},
    {'I', "workaround for bug in platform firmware applied"},
    {'O', "externally-built (\"out-of-tree\") module was loaded"},
    {'E', "unsigned module was loaded"},
    {'L', "soft lockup occurred"},
    {'K', "kernel has been live patched"},
    {'X', "auxiliary taint, defined for and used by distros"},
    {'T', "kernel was built with the struct randomization plugin"},
    {'N', "an in-kernel test has been run"},
    {'J', "userspace used a mutating debug operation in fwctl"},
};

std::vector<std::string_view> splitBy(std::string_view s, std::string_view seps) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t b = s.find_first_not_of(seps, i);
    if (b == std::string_view::npos) break;
    size_t e = s.find_first_of(seps, b);
    if (e == std::string_view::npos) e = s.size();
    out.push_back(s.substr(b, e - b));
    i = e;
  }
  return out;
}

// One /proc/modules line: "name size refcount used_by, state address [(taint)]".
nlohmann::json moduleRecord(std::string_view line) {
  std::vector<std::string_view> f = splitBy(line, " \t");
  if (f.size() < 5) return nullptr;
  nlohmann::json r;
  putText(r, "name", f[0]);
  int64_t v = 0;
  r["size"] = absl::SimpleAtoi(absl::string_view(f[1].data(), f[1].size()), &v)
                  ? nlohmann::json(v)
                  : nlohmann::json(nullptr);
  r["refcount"] = absl::SimpleAtoi(absl::string_view(f[2].data(), f[2].size()), &v)
                      ? nlohmann::json(v)
                      : nlohmann::json(nullptr);
  nlohmann::json used_by = nlohmann::json::array();
  if (f[3] != "-") {
    for (std::string_view u : splitBy(f[3], ",")) used_by.push_back(std::string(u));
  }
  r["used_by"] = std::move(used_by);
  r["state"] = std::string(f[4]);
  if (f.size() > 5) r["address"] = std::string(f[5]);
  std::string taint;
  if (f.size() > 6 && f[6].size() >= 2 && f[6].front() == '(' && f[6].back() == ')') {
    taint = std::string(f[6].substr(1, f[6].size() - 2));
  }
  r["taint"] = taint;
  return r;
}

// Emits kernel_modules.jsonl; returns the module names seen (empty set and false in `listed`
// when the kernel has no /proc/modules). False when the sink refused.
bool emitModules(const CollectContext& ctx, ArtifactSink& sink, std::set<std::string>& names,
                 bool& listed) {
  auto f = readRegularFile(ctx.proc_root / "modules", kProcFileCap);
  listed = f.ok();
  if (absl::IsNotFound(f.status())) return true;  // kernel built without module support
  if (!f.ok()) {
    sink.warn(fmt::format("modules: {}", f.status()));
    return true;
  }
  for (std::string_view line : splitLines(f->bytes)) {
    if (sink.stopped()) return false;
    if (trimBlanks(line).empty()) continue;
    nlohmann::json r = moduleRecord(line);
    if (r.is_null()) {
      sink.warn(fmt::format("modules: unparsable line \"{}\"", proc::utf8(line.substr(0, 200))));
      continue;
    }
    names.insert(r["name"].get<std::string>());
    if (!sink.record("kernel_modules.jsonl", r)) return false;
  }
  return true;
}

// kernel.json: taint mask decoded, command line, and loadable modules sysfs knows of that
// /proc/modules does not list (a module unlinking itself from the module list).
bool emitKernelFile(const CollectContext& ctx, ArtifactSink& sink,
                    const std::set<std::string>& modules, bool modules_listed) {
  nlohmann::json k;
  k["tainted"] = nullptr;
  k["taint_flags"] = nlohmann::json::array();
  auto t = readRegularFile(ctx.proc_root / "sys/kernel/tainted", 4096);
  uint64_t mask = 0;
  if (!t.ok()) {
    sink.warn(fmt::format("taint: {}", t.status()));
  } else if (std::string_view text = trimBlanks(t->bytes);
             !absl::SimpleAtoi(absl::string_view(text.data(), text.size()), &mask)) {
    sink.warn(fmt::format("taint: unparsable \"{}\"", proc::utf8(text.substr(0, 64))));
  } else {
    k["tainted"] = mask;
    for (unsigned bit = 0; bit < 64; ++bit) {
      if ((mask & (uint64_t{1} << bit)) == 0) continue;
      nlohmann::json flag;
      flag["bit"] = bit;
      if (bit < std::size(kTaintFlags)) {
        flag["letter"] = std::string(1, kTaintFlags[bit].letter);
        flag["meaning"] = kTaintFlags[bit].meaning;
      } else {
        flag["letter"] = "?";
        flag["meaning"] = fmt::format("taint bit {} (unknown to this agent)", bit);
      }
      k["taint_flags"].push_back(std::move(flag));
    }
  }
  auto c = readRegularFile(ctx.proc_root / "cmdline", 64 * 1024);
  if (c.ok()) {
    putText(k, "cmdline", trimBlanks(c->bytes));
  } else {
    k["cmdline"] = nullptr;
    sink.warn(fmt::format("cmdline: {}", c.status()));
  }
  k["modules_listed"] = modules_listed;
  // Loadable modules have /sys/module/NAME/initstate; built-in ones do not.
  nlohmann::json sysfs_only = nlohmann::json::array();
  const std::filesystem::path sys_module = underRoot(ctx.root, "/sys/module");
  if (auto entries = listDir(sys_module); entries.ok()) {
    for (const std::string& m : *entries) {
      if (sink.stopped()) return false;
      struct stat st {};
      if (::lstat((sys_module / m / "initstate").c_str(), &st) != 0) continue;
      if (modules.count(m) == 0) sysfs_only.push_back(proc::utf8(m));
    }
  }
  k["sysfs_only_modules"] = std::move(sysfs_only);
  return sink.file("artifacts/kernel.json", dumpJson(k, 2));
}

// Entries of /etc/ld.so.preload as ld.so reads them: separated by blanks or ':', '#' starts
// a comment.
bool emitPreload(const CollectContext& ctx, ArtifactSink& sink) {
  constexpr std::string_view kSource = "/etc/ld.so.preload";
  auto f = readRegularFile(underRoot(ctx.root, kSource), 1 * kMiB);
  if (absl::IsNotFound(f.status())) return true;
  if (!f.ok()) {
    sink.warn(fmt::format("preload: {}", f.status()));
    return true;
  }
  if (f->truncated) sink.warn("preload: /etc/ld.so.preload over 1 MiB, the rest not read");
  for (std::string_view line : splitLines(f->bytes)) {
    line = line.substr(0, line.find('#'));
    for (std::string_view entry : splitBy(line, " \t:")) {
      if (sink.stopped()) return false;
      nlohmann::json r;
      r["source"] = std::string(kSource);
      putText(r, "entry", entry);
      if (!sink.record("preload.jsonl", r)) return false;
    }
  }
  return true;
}

// The object behind a pinned BPF path: "prog", "map", "link" (from /proc/self/fdinfo of a
// BPF_OBJ_GET descriptor) with its kind and id, or just "pinned" when it cannot be opened.
void describeBpfObject(const std::filesystem::path& path, nlohmann::json& r) {
  r["type"] = "pinned";
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.pathname = reinterpret_cast<uint64_t>(path.c_str());
  const int fd = static_cast<int>(::syscall(SYS_bpf, BPF_OBJ_GET, &attr, sizeof attr));
  if (fd < 0) return;
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  auto info = readRegularFile(fmt::format("/proc/self/fdinfo/{}", fd), 64 * 1024);
  ::close(fd);
  if (!info.ok()) return;
  for (std::string_view line : splitLines(info->bytes)) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    std::string value(trimBlanks(line.substr(colon + 1)));
    for (std::string_view kind : {"prog", "map", "link"}) {
      if (key == fmt::format("{}_type", kind)) {
        r["type"] = std::string(kind);
        r["subtype"] = value;
      } else if (key == fmt::format("{}_id", kind)) {
        r["id"] = value;
      }
    }
  }
}

bool emitBpfPins(const CollectContext& ctx, ArtifactSink& sink) {
  const bool real_root = ctx.root == std::filesystem::path("/");
  WalkLimits limits;
  limits.max_depth = 8;
  limits.max_entries = 10000;
  bool refused = false;
  WalkResult w = walkTree(
      ctx.root, "/sys/fs/bpf", limits,
      [&](const WalkEntry& e) {
        if (S_ISDIR(e.st.st_mode)) return true;
        nlohmann::json r;
        putText(r, "path", e.host_path);
        if (S_ISREG(e.st.st_mode) && real_root) {
          describeBpfObject(underRoot(ctx.root, e.host_path), r);
        } else {
          r["type"] = std::string(fileTypeName(e.st.st_mode));
        }
        r["mtime_unix_ms"] = mtimeMs(e.st);
        refused = !sink.record("bpf_pins.jsonl", r);
        return !refused;
      },
      [&](const std::string& m) { sink.warn(fmt::format("bpf pins: {}", m)); },
      [&] { return sink.stopped(); });
  if (w.cut && !refused && !sink.stopped()) {
    sink.warn(fmt::format("bpf pins: listing cut at {} entries", limits.max_entries));
  }
  return !refused && !sink.stopped();
}

class KernelCollector final : public Collector {
 public:
  std::string_view name() const override { return "kernel"; }

  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    std::set<std::string> modules;
    bool listed = false;
    if (!emitModules(ctx, sink, modules, listed)) return absl::OkStatus();
    if (!emitKernelFile(ctx, sink, modules, listed)) return absl::OkStatus();
    if (!emitPreload(ctx, sink)) return absl::OkStatus();
    emitBpfPins(ctx, sink);
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Collector> makeKernelCollector() { return std::make_unique<KernelCollector>(); }

}  // namespace bulkhead::agent::collect
