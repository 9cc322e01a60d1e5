// The collectors a capture runs, in order of volatility (RFC 3227 §2.1, notes/field.md).
// Artifact names and record fields: evidence/README.md.
#pragma once

#include <memory>
#include <vector>

#include "agent/collect/collector.h"

namespace bulkhead::agent::collect {

// metadata.json: UTC time, boot time, clock offset to the controller, uname, agent version.
std::unique_ptr<Collector> makeMetadataCollector();
// processes.jsonl (+ binaries/<sha256> for deleted/memfd executables), hidden_pids.jsonl.
std::unique_ptr<Collector> makeProcessCollector();
// open_files.jsonl, memory_maps.jsonl (deleted, memfd and anonymous executable mappings).
std::unique_ptr<Collector> makeOpenFilesCollector();
// sockets.jsonl: TCP, UDP, UNIX, PACKET, v4 and v6, with owning pids (sock_diag).
std::unique_ptr<Collector> makeSocketCollector();
// links.jsonl, addresses.jsonl, routes.jsonl, neighbours.jsonl (rtnetlink via libnl).
std::unique_ptr<Collector> makeNetworkCollector();
// nftables.json: the live ruleset as `nft -j list ruleset` prints it (libnftables).
std::unique_ptr<Collector> makeFirewallCollector();
// logind_sessions.jsonl, utmp.jsonl, wtmp.jsonl, btmp.jsonl.
std::unique_ptr<Collector> makeLoginCollector();
// kernel_modules.jsonl, kernel.json (taint), preload.jsonl (/etc/ld.so.preload), bpf_pins.jsonl.
std::unique_ptr<Collector> makeKernelCollector();
// tmp_listing.jsonl: /tmp, /var/tmp, /dev/shm.
std::unique_ptr<Collector> makeTempFilesCollector();
// crontabs.jsonl, systemd_units.jsonl, authorized_keys.jsonl, accounts.jsonl (passwd, group,
// shadow-free), sudoers.jsonl, shell_history.jsonl.
std::unique_ptr<Collector> makePersistenceCollector();

// stopped_processes.jsonl (+ binaries/<sha256>): each of CollectContext::target_pids in full
// (status, cmdline, environ, every mapping, every fd, the executable's hash and bytes). Run
// only by capture-first kills, not part of defaultCollectors().
std::unique_ptr<Collector> makeStoppedProcessCollector();

// All of the above but stopped_processes, most volatile first.
std::vector<std::unique_ptr<Collector>> defaultCollectors();

}  // namespace bulkhead::agent::collect
