// sock_diag dumps as the agent decodes them: inet sockets and acks (agent/linux, flow killing)
// and UNIX and packet sockets (agent/collect, sockets.jsonl). UNIX socket names are chosen by
// any local process; the records must serialise.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "agent/collect/sock_diag_records.h"
#include "agent/linux/sock_diag_flow_killer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bulkhead::agent;
  bool done = false;
  std::vector<DiagSocket> sockets;
  if (parseInetDiagDump(data, size, &sockets, &done).ok()) {
    std::vector<uint8_t> requests;
    for (const DiagSocket& s : sockets) appendDestroyRequest(s, 1, &requests);
  }
  std::vector<NetlinkAck> acks;
  (void)parseNetlinkAcks(data, size, &acks);
  for (auto parse : {collect::parseUnixDiagDatagram, collect::parsePacketDiagDatagram}) {
    std::vector<collect::SocketRecord> records;
    done = false;
    (void)parse(data, size, &records, &done);
    for (const auto& r : records) {
      (void)r.record.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    }
  }
  return 0;
}
