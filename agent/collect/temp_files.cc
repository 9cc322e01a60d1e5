// Temp-file collector: lstat listings of /tmp, /var/tmp and /dev/shm, where intruders drop
// tools. Never follows a symlink and never opens a file (walkTree in host_files.h).
#include <fmt/format.h>

#include <string>

#include "agent/collect/collectors.h"
#include "agent/collect/host_files.h"

namespace bulkhead::agent::collect {
namespace {

constexpr const char* kTrees[] = {"/tmp", "/var/tmp", "/dev/shm"};

nlohmann::json entryRecord(const WalkEntry& e) {
  nlohmann::json r;
  putText(r, "path", e.host_path);
  r["type"] = S_ISCHR(e.st.st_mode) || S_ISBLK(e.st.st_mode)
                  ? std::string("other")
                  : std::string(fileTypeName(e.st.st_mode));
  r["size"] = static_cast<int64_t>(e.st.st_size);
  r["mode"] = fmt::format("{:04o}", e.st.st_mode & 07777);  // "0755", "4755", "1777"
  r["uid"] = e.st.st_uid;
  r["gid"] = e.st.st_gid;
  r["mtime_unix_ms"] = mtimeMs(e.st);
  r["ctime_unix_ms"] = ctimeMs(e.st);
  r["inode"] = static_cast<uint64_t>(e.st.st_ino);
  r["nlink"] = static_cast<uint64_t>(e.st.st_nlink);
  if (S_ISLNK(e.st.st_mode)) {
    putText(r, "link_target", e.link_target);
  } else {
    r["link_target"] = nullptr;
  }
  return r;
}

class TempFilesCollector final : public Collector {
 public:
  std::string_view name() const override { return "temp_files"; }

  absl::Status collect(const CollectContext& ctx, ArtifactSink& sink) override {
    WalkLimits limits;  // depth 4, 20,000 entries per tree
    // An intruder's FUSE or NFS mount under /tmp must not hang the listing on its first lstat.
    limits.avoid = hangProneMounts(ctx.proc_root / "self/mountinfo");
    for (const char* tree : kTrees) {
      bool refused = false;
      WalkResult w = walkTree(
          ctx.root, tree, limits,
          [&](const WalkEntry& e) {
            refused = !sink.record("tmp_listing.jsonl", entryRecord(e));
            return !refused;
          },
          [&](const std::string& m) { sink.warn(m); }, [&] { return sink.stopped(); });
      if (refused || sink.stopped()) return absl::OkStatus();
      if (w.cut) {
        sink.warn(fmt::format("{}: listing cut at {} entries", tree, limits.max_entries));
      }
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Collector> makeTempFilesCollector() {
  return std::make_unique<TempFilesCollector>();
}

}  // namespace bulkhead::agent::collect
