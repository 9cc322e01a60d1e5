#include "controller/core/replica_pieces.h"

namespace bulkhead::controller {

std::vector<bulkhead::v1::ReplicaEvent> splitReplicaEvent(const std::string& sender, uint64_t key,
                                                          const std::string& bytes,
                                                          size_t piece_size) {
  std::vector<bulkhead::v1::ReplicaEvent> out;
  const size_t count = (bytes.size() + piece_size - 1) / piece_size;
  for (size_t i = 0; i < count; ++i) {
    bulkhead::v1::ReplicaEvent& piece = out.emplace_back();
    piece.set_replica(sender);
    bulkhead::v1::ReplicaPart* part = piece.mutable_part();
    part->set_key(key);
    part->set_index(static_cast<uint32_t>(i));
    part->set_count(static_cast<uint32_t>(count));
    part->set_data(bytes.substr(i * piece_size, piece_size));
  }
  return out;
}

std::optional<std::string> ReplicaAssembler::add(const std::string& sender,
                                                 const bulkhead::v1::ReplicaPart& part) {
  const auto key = std::make_pair(sender, part.key());
  std::vector<std::string>& pieces = parts_[key];
  if (part.count() > max_pieces_ || part.index() != pieces.size() || part.index() >= part.count()) {
    parts_.erase(key);
    return std::nullopt;
  }
  pieces.push_back(part.data());
  if (pieces.size() < part.count()) return std::nullopt;
  std::string whole;
  for (const auto& p : pieces) whole += p;
  parts_.erase(key);
  return whole;
}

void ReplicaAssembler::forget(const std::string& sender) {
  std::erase_if(parts_, [&sender](const auto& entry) { return entry.first.first == sender; });
}

}  // namespace bulkhead::controller
