#include "agent/linux/resident_pages.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>

#include "agent/linux/proc_files.h"
#include "common/lines.h"

namespace bulkhead::agent {
namespace {

constexpr uint64_t kPagePresent = uint64_t{1} << 63;
constexpr uint64_t kPageFileOrSharedAnon = uint64_t{1} << 61;
constexpr size_t kMapsCap = 4 << 20;  // the agent has about a hundred mappings

std::optional<uintptr_t> hex(std::string_view text) {
  uintptr_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 16);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

}  // namespace

std::vector<PageRange> readOnlyFileMappings(std::string_view maps_text) {
  std::vector<PageRange> out;
  for (std::string_view line : splitLines(maps_text)) {
    auto m = proc::parseMapsLine(line);
    if (!m || m->perms[1] == 'w' || m->path.empty() || m->path.front() != '/') continue;
    auto start = hex(m->start);
    auto end = hex(m->end);
    if (!start || !end || *end <= *start) continue;
    out.push_back({*start, *end - *start});
  }
  return out;
}

std::vector<PageRange> cleanFilePageRuns(const PageRange& mapping,
                                         std::span<const uint64_t> entries, size_t page_size) {
  std::vector<PageRange> runs;
  const size_t pages = std::min(entries.size(), mapping.length / page_size);
  for (size_t i = 0; i < pages; ++i) {
    const uint64_t e = entries[i];
    if ((e & kPagePresent) == 0 || (e & kPageFileOrSharedAnon) == 0) continue;
    const uintptr_t at = mapping.start + i * page_size;
    if (!runs.empty() && runs.back().start + runs.back().length == at) {
      runs.back().length += page_size;
    } else {
      runs.push_back({at, page_size});
    }
  }
  return runs;
}

absl::StatusOr<ResidentTrim> dropCleanFilePages() {
  std::string maps;
  if (!proc::readFileAt(AT_FDCWD, "/proc/self/maps", kMapsCap, &maps)) {
    return absl::UnavailableError(
        fmt::format("cannot read /proc/self/maps: {}", std::strerror(errno)));
  }
  proc::ScopedFd pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!pagemap.ok()) {
    return absl::UnavailableError(
        fmt::format("cannot open /proc/self/pagemap: {}", std::strerror(errno)));
  }
  const auto page_size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  ResidentTrim trim;
  std::vector<uint64_t> entries;
  for (const PageRange& mapping : readOnlyFileMappings(maps)) {
    ++trim.mappings;
    entries.resize(mapping.length / page_size);
    const auto offset = static_cast<off_t>(mapping.start / page_size * sizeof(uint64_t));
    ssize_t n = ::pread(pagemap.get(), entries.data(), entries.size() * sizeof(uint64_t), offset);
    if (n <= 0) continue;  // unmapped meanwhile
    std::span<const uint64_t> read(entries.data(), static_cast<size_t>(n) / sizeof(uint64_t));
    for (uint64_t e : read) {
      if ((e & kPagePresent) != 0 && (e & kPageFileOrSharedAnon) == 0) {
        trim.kept_bytes += page_size;
      }
    }
    for (const PageRange& run : cleanFilePageRuns(mapping, read, page_size)) {
      if (::madvise(reinterpret_cast<void*>(run.start), run.length, MADV_DONTNEED) == 0) {
        trim.bytes += run.length;
      }
    }
  }
  return trim;
}

}  // namespace bulkhead::agent
