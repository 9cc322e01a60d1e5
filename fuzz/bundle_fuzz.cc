// evidence/bundle and evidence/summary on an uploaded file: the controller verifies every
// bundle an agent uploads (attacker-supplied tar.gz) and summarizes it for `evidence show`.
// The input is the whole .tar.gz; it is served from a memfd (no disk I/O per input).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "evidence/bundle.h"
#include "evidence/summary.h"

namespace {

// The memfd holding the current input, and its path for code that opens files by name.
struct Memfd {
  int fd = -1;
  std::string path;
};

const Memfd& bundleFile() {
  static const Memfd file = [] {
    Memfd m;
    m.fd = memfd_create("bundle.tar.gz", MFD_CLOEXEC);
    if (m.fd < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    m.path = "/proc/self/fd/" + std::to_string(m.fd);
    return m;
  }();
  return file;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Memfd& file = bundleFile();
  if (ftruncate(file.fd, 0) != 0 || pwrite(file.fd, data, size, 0) != static_cast<ssize_t>(size)) {
    std::perror("memfd write");
    std::abort();
  }
  namespace ev = bulkhead::evidence;
  ev::VerifyOptions options;
  options.expected_host_id = "web-01";
  auto v = ev::verifyBundle(file.path, options);
  if (v.ok()) {
    // Everything the controller stores or returns about the bundle must serialise.
    (void)v->manifest.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    for (const auto& p : v->problems) {
      if (p.problem.empty()) std::abort();
    }
  }
  (void)ev::readMembers(file.path, {"manifest.json", "artifacts/processes.jsonl"}, 1 << 20);
  if (auto s = ev::summarize(file.path); s.ok()) {
    (void)s->dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    (void)ev::renderSummary(*s);
  }
  return 0;
}
