// What the evidence service needs of the controller's evidence store beyond the Store: the
// bundle files, the fleet CA that signs bundles, the progress of capture commands and the
// evidence I/O thread. rpc/'s EvidenceHub (which also receives the agents' uploads)
// implements it; service tests use a fake.
#pragma once

#include <functional>
#include <string>

#include "bulkhead/v1/agent.pb.h"
#include "controller/store/evidence_files.h"

namespace bulkhead::controller {

class EvidenceBackend {
 public:
  virtual ~EvidenceBackend() = default;

  // False: this controller keeps no evidence (no --data-dir); nothing else may be called.
  virtual bool enabled() const = 0;
  virtual EvidenceFiles& files() = 0;
  // The fleet CA (PEM) a stored bundle's signer must chain to.
  virtual const std::string& caPem() const = 0;

  // Progress of command `command_id`, sent to `host` (the agent's and the upload's), goes to
  // `fn` until unwatch(); `fn` runs on the backend's own thread. One watcher per command.
  using ProgressFn = std::function<void(const bulkhead::v1::CommandProgress&)>;
  virtual void watch(const std::string& command_id, const std::string& host, ProgressFn fn) = 0;
  virtual void unwatch(const std::string& command_id) = 0;

  // Runs `fn` on the evidence I/O thread (disk-heavy work: verification, summaries). False
  // (fn dropped) after shutdown.
  virtual bool postIo(std::function<void()> fn) = 0;
};

}  // namespace bulkhead::controller
