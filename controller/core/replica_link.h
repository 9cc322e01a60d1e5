// How a controller reaches the other controllers serving the same database at once
// (`--replica NAME`): a channel every one of them listens on. PostgresBus
// (controller/store/postgres_bus.h) implements it with LISTEN/NOTIFY.
#pragma once

#include <string>

namespace bulkhead::controller {

class ReplicaLink {
 public:
  virtual ~ReplicaLink() = default;
  // Queues `payload` (printable text, under 7,000 bytes) for every controller listening, this
  // one included. Never blocks; lost when the database cannot be reached (each controller
  // asks the others again when it reconnects).
  virtual void send(std::string payload) = 0;
};

}  // namespace bulkhead::controller
