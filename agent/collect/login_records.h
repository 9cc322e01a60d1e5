// Pure parsers of the login collector (logins.cc): one accounting record (utmp, wtmp, btmp)
// and one logind session state file, as the records of utmp.jsonl and logind_sessions.jsonl.
// Every byte is untrusted (user names and remote hosts come from whoever logs in); text that is
// not UTF-8 is kept as in putText().
#pragma once

#include <utmp.h>

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string_view>

namespace bulkhead::agent::collect {

inline constexpr size_t kUtmpRecordSize = sizeof(struct utmp);

// One `struct utmp` as the C library writes it: `record` holds kUtmpRecordSize bytes (fewer
// are read as if zero-padded, extra bytes are ignored).
nlohmann::json utmpRecord(std::string_view record);

// KEY=VALUE lines of the logind session file named `id` (/run/systemd/sessions/ID).
nlohmann::json sessionRecord(std::string_view id, std::string_view text);

}  // namespace bulkhead::agent::collect
