// /proc text as the agent parses it (agent/core/processes, agent/linux/proc_files): stat,
// status, cmdline, loginuid, net/tcp, maps, fd links, stat btime, uptime, and loginctl output.
// Process names, arguments and mapped file names are chosen by any local user. Every parser
// reads the same input; JSON built from it must serialise (strict UTF-8).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "agent/collect/host_files.h"
#include "agent/linux/proc_files.h"
#include "agent/core/processes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bulkhead::agent;
  namespace proc = bulkhead::agent::proc;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto stat = parseProcStat(text); stat.ok()) {
    (void)ttyName(stat->tty_nr);
    (void)proc::ttyOrNone(stat->tty_nr);
    if (stat->comm.size() > text.size()) std::abort();
  }
  (void)parseProcStatus(text);
  (void)parseStatusUid(text);
  (void)parseAuditId("loginuid", text);
  (void)proc::auditIdOrUnset(text);
  (void)joinCmdline(text);
  for (bool v6 : {false, true}) (void)parseProcNetTcp(text, v6);
  (void)parseLoginctlShow(text);
  (void)parseLoginctlList(text);
  (void)proc::socketInodeFromLink(std::string(text));
  (void)proc::linkFlags(text);
  (void)proc::parseBootTime(text);
  (void)proc::parseUptimeMs(text);

  const std::string clean = proc::utf8(text);
  (void)nlohmann::json(clean).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  (void)proc::splitNul(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  for (std::string_view line : collect::splitLines(text)) {
    if (auto m = proc::parseMapsLine(line); m.has_value()) (void)proc::interestingMapping(*m);
  }
  return 0;
}
