// agent/collect/host_files: /proc/self/mountinfo, whose mount points any user who can mount
// (FUSE) chooses; the result decides which trees the temp-file walk avoids.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "agent/collect/host_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const std::string& point : bulkhead::agent::collect::parseHangProneMounts(text)) {
    if (point.size() > text.size()) std::abort();  // escapes only shrink
  }
  return 0;
}
