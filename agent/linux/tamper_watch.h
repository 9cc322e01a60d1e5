// NetlinkTamperWatch: notices changes to our nftables table made by anyone (an `nft flush
// ruleset`, a firewalld reload, `nft delete table inet bulkhead`) through the nf_tables
// netlink event group, and tells the agent's reconciler to re-check. The reconciler decides
// whether it was tampering by comparing the read-back hash with the one it expects (our own
// applies also produce events; they read back as expected).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace bulkhead::agent {

// One nf_tables event message, decoded. Pure data.
struct NftEvent {
  uint16_t msg_type = 0;  // NFT_MSG_* (subsystem byte stripped)
  uint8_t family = 0;     // NFPROTO_* of the object (nfgenmsg)
  std::string table;      // table name attribute, empty when absent
  // NFT_MSG_NEWGEN only: the generation and the process that committed the transaction.
  uint32_t gen_id = 0;
  uint32_t pid = 0;  // kernel-global thread id of the committer
  std::string proc_name;
};

// Pure. Decodes every nf_tables message of one datagram from the NFNLGRP_NFTABLES group;
// messages of other subsystems are skipped; a malformed datagram is an error.
absl::Status parseNftEvents(const void* data, size_t len, std::vector<NftEvent>* out);

// Pure. "NEWTABLE", "DELRULE", ... ("MSG_<n>" for unknown types).
std::string nftMessageName(uint16_t msg_type);

// What the callback is told.
struct TamperEvent {
  enum class Reason {
    kTableChanged,  // a message about our table arrived (or NEWGEN after one)
    kOverflow,      // the event socket overflowed: events were lost, re-check
    kBackstop,      // periodic check, no event seen
  };
  Reason reason = Reason::kTableChanged;
  size_t messages = 0;              // relevant messages in this debounce window
  std::vector<std::string> kinds;   // distinct message names, e.g. {"DELRULE", "DELTABLE"}
  std::vector<std::string> actors;  // distinct committers from NEWGEN, e.g. "nft (pid 4242)"
};

std::string toString(TamperEvent::Reason reason);

// Pure aggregation of decoded events into debounce windows (used by the watch; unit-tested).
class TamperAggregator {
 public:
  TamperAggregator(uint8_t family, std::string table);
  // Feeds one decoded event; returns true if it concerns our table (or completes a
  // transaction that did).
  bool add(const NftEvent& e);
  bool pending() const { return event_.messages > 0; }
  // Returns the window so far and starts a new one.
  TamperEvent take();

 private:
  uint8_t family_;
  std::string table_;
  bool in_relevant_txn_ = false;  // relevant messages since the last NEWGEN
  TamperEvent event_;
};

// Thread-safety: create() opens a NETLINK_NETFILTER socket (in the network namespace of the
// calling thread) joined to NFNLGRP_NFTABLES and starts ONE watcher thread. The callback is
// invoked only on that thread, never concurrently with itself, and never after stop() (or
// the destructor) returns. It must not block for long and must not drive the agent's
// Firewall itself (its nft_ctx belongs to the reconciler thread): post a "re-check" to the
// reconciler and return. Events are debounced: the first relevant message opens a window of
// `debounce`; one callback then reports everything seen in it (bounded latency even under a
// stream of changes). With backstop > 0, a kBackstop callback also fires after every
// `backstop` without a callback.
class NetlinkTamperWatch {
 public:
  using Callback = std::function<void(const TamperEvent&)>;
  struct Options {
    uint8_t family = 1;  // NFPROTO_INET
    std::string table = "bulkhead";
    std::chrono::milliseconds debounce{20};
    std::chrono::milliseconds backstop{30000};  // 0 disables
  };

  static absl::StatusOr<std::unique_ptr<NetlinkTamperWatch>> create(Options options,
                                                                    Callback callback);
  ~NetlinkTamperWatch();
  NetlinkTamperWatch(const NetlinkTamperWatch&) = delete;
  NetlinkTamperWatch& operator=(const NetlinkTamperWatch&) = delete;

  // Stops and joins the watcher thread. Idempotent. Must not be called from the callback.
  void stop();

 private:
  NetlinkTamperWatch(Options options, Callback callback, int sock, int stop_fd);
  void run();

  const Options options_;
  const Callback callback_;
  int sock_;     // owned
  int stop_fd_;  // eventfd, owned
  std::thread thread_;
};

}  // namespace bulkhead::agent
