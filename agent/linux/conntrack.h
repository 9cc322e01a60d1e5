// Conntrack enumeration and deletion through ctnetlink (libnl-nf), plus the pure mapping of a
// conntrack entry to a Flow. Used by SockDiagFlowKiller.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/core/flow.h"
#include "agent/linux/flow_killer.h"

struct nl_sock;

namespace bulkhead::agent {

// The addresses that terminate on this host (its interfaces, plus all of 127.0.0.0/8 and ::1).
class LocalAddresses {
 public:
  // Reads the calling thread's network namespace with getifaddrs().
  static absl::StatusOr<LocalAddresses> read();
  void add(int family, const std::array<uint8_t, 16>& addr);
  bool contains(int family, const std::array<uint8_t, 16>& addr) const;

 private:
  std::set<std::pair<int, std::array<uint8_t, 16>>> addrs_;
};

// One direction of a conntrack entry. Addresses in network byte order (IPv4 in the first 4
// bytes), ports in host byte order (0 when the protocol has none).
struct CtTuple {
  std::array<uint8_t, 16> src{};
  std::array<uint8_t, 16> dst{};
  uint16_t sport = 0;
  uint16_t dport = 0;
};

// Pure. Builds the Flow of a conntrack entry from its original and reply tuples.
// - local entry (an end of the connection is this host, in both tuples): local_* is this
//   host's end, remote_* the peer's, taken from the original tuple;
// - forwarded = true when no end is this host in the original tuple, or when the reply comes
//   from a non-local address (DNAT to a container/another host). Then there is no "local"
//   end: by convention local_* holds the ORIGINAL SOURCE (initiator) and remote_* the original
//   destination; selectors matching a peer address must test both sides of forwarded flows.
Flow flowFromConntrack(int family, uint8_t l4proto, const CtTuple& orig, const CtTuple& reply,
                       const LocalAddresses& local);

// Protocols whose conntrack tuples carry ports (TCP, UDP, UDP-Lite, SCTP, DCCP).
bool protoHasPorts(uint8_t l4proto);

// True when this network namespace has no conntrack entries (nf_conntrack_count is 0, or
// conntrack is not loaded here).
bool conntrackEmpty();

// ConntrackTable: a ctnetlink socket in the network namespace where create() ran.
// Thread-compatible: one caller at a time (the agent's enforcement thread).
class ConntrackTable {
 public:
  static absl::StatusOr<std::unique_ptr<ConntrackTable>> create();
  ~ConntrackTable();
  ConntrackTable(const ConntrackTable&) = delete;
  ConntrackTable& operator=(const ConntrackTable&) = delete;

  // Dumps all entries (IPv4 and IPv6). A namespace where conntrack is not loaded yields an
  // empty list, not an error.
  absl::StatusOr<std::vector<Flow>> list();

  // Dumps, asks `selector` about each entry, then deletes the chosen ones (after the dump).
  // Appends to report->conntrack_deleted (or, with dry_run, the entries that would be
  // deleted), report->conntrack_kept and report->errors. Entries that vanished meanwhile are
  // skipped silently. Deletes go to the kernel in batches; returns an error when the dump fails,
  // or when a batch could not be sent or its answers not read (then later batches are not
  // tried, and what was reported deleted stays reported).
  absl::Status cut(const FlowSelector& selector, bool dry_run, CutReport* report);

 private:
  explicit ConntrackTable(nl_sock* sock);
  nl_sock* sock_;  // owned
  // The sequence numbers of cut()'s batched deletes, far from libnl's own for the dumps.
  uint32_t batch_seq_ = 1U << 31;
};

}  // namespace bulkhead::agent
