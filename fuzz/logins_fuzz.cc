// agent/collect/logins: utmp/wtmp/btmp records (user names and remote hosts come from whoever
// logs in, btmp from whoever fails to) and logind session files. The input is cut into
// records of the C library's size (the last one may be short), and read whole as a session
// file. Records must serialise (strict UTF-8).
#include <cstdint>
#include <string_view>

#include "agent/collect/login_records.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bulkhead::agent::collect;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (size_t off = 0; off < bytes.size(); off += kUtmpRecordSize) {
    const nlohmann::json r = utmpRecord(bytes.substr(off, kUtmpRecordSize));
    (void)r.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  }
  const nlohmann::json session = sessionRecord("c1", bytes);
  (void)session.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  return 0;
}
