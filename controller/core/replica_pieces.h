// Events between controllers serving one database at once travel as PostgreSQL notices, which
// hold under 8,000 bytes: a larger event (a long session list, a dry run's ruleset) is sent as
// ReplicaPart pieces and put back together by each receiver. One sender's notices arrive in the
// order it sent them, so a piece out of order means one was lost (its link reconnected): the
// event is dropped, never put together wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bulkhead/v1/replica.pb.h"

namespace bulkhead::controller {

// The pieces of `bytes` (a serialized ReplicaEvent), each holding at most `piece_size` of them,
// as events from `sender` under `key` (unique per sender).
std::vector<bulkhead::v1::ReplicaEvent> splitReplicaEvent(const std::string& sender, uint64_t key,
                                                          const std::string& bytes,
                                                          size_t piece_size);

class ReplicaAssembler {
 public:
  // At most this many pieces per event; an event announcing more is dropped.
  explicit ReplicaAssembler(size_t max_pieces) : max_pieces_(max_pieces) {}
  // A piece from `sender`: the whole event's bytes when it completes one; nullopt otherwise
  // (more to come, or the event dropped: a piece out of order, too many pieces).
  std::optional<std::string> add(const std::string& sender, const bulkhead::v1::ReplicaPart& part);
  // Drops the unfinished events of `sender` (a controller no longer heard from).
  void forget(const std::string& sender);
  size_t unfinished() const { return parts_.size(); }

 private:
  size_t max_pieces_;
  std::map<std::pair<std::string, uint64_t>, std::vector<std::string>> parts_;
};

}  // namespace bulkhead::controller
