// Gives back the agent's clean file pages: the pages of its program and libraries that are
// still exactly what the file holds (code, read-only data), mapped at start-up and then not
// used again while the agent idles.
//
// Why: at rest the agent's resident set was 26 MB, of which 3.4 MB were its own (anonymous)
// memory and the rest library pages touched once while starting (gRPC, OpenSSL, protobuf and
// libnftables set-up), each fault mapping its 64 KiB neighbourhood too. Unmapping them
// (madvise MADV_DONTNEED) leaves them in the page cache: a later use is a minor fault that
// maps the same page again, with no disk read unless the kernel reclaimed it meanwhile.
//
// Which pages: only those of mappings without write permission that map a file, and of
// those only pages the kernel reports (/proc/self/pagemap) as present and file-backed. A page
// written since the mapping was made (relocated read-only data after RELRO, a debugger's or
// uprobe's breakpoint in code) is a private anonymous copy: it is never dropped, because
// dropping it would bring back the file's unmodified bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bulkhead::agent {

// One address range [start, start + length).
struct PageRange {
  uintptr_t start = 0;
  size_t length = 0;
  bool operator==(const PageRange&) const = default;
};

// Pure: the mappings of /proc/PID/maps text that map a file ("/..." path, " (deleted)" too)
// without write permission. Lines that do not parse are skipped.
std::vector<PageRange> readOnlyFileMappings(std::string_view maps_text);

// Pure: the runs of pages of `mapping` whose /proc/PID/pagemap entries (one 64-bit entry per
// page, in order) say present (bit 63) and file-backed (bit 61). `entries` may be shorter than
// the mapping (only the entries read are looked at).
std::vector<PageRange> cleanFilePageRuns(const PageRange& mapping,
                                         std::span<const uint64_t> entries, size_t page_size);

struct ResidentTrim {
  int mappings = 0;         // read-only file mappings looked at
  uint64_t bytes = 0;       // resident bytes unmapped
  uint64_t kept_bytes = 0;  // resident but private copies (written): kept
};

// Unmaps this process's clean file pages (see above). Errors only when /proc/self/maps or
// /proc/self/pagemap cannot be read; a range madvise refuses (e.g. locked memory) is skipped.
// Callable from any thread: a thread using a dropped page faults it back in. The one unsafe
// moment would be a library unloaded and another mapped at its address between the two reads
// and the madvise; the agent never unloads libraries.
absl::StatusOr<ResidentTrim> dropCleanFilePages();

}  // namespace bulkhead::agent
