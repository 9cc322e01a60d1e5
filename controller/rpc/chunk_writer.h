// A server-streaming answer prepared whole: the messages are written one after the other,
// then the call finishes OK; or it only finishes with `failure` when that is not OK. Used by
// the operator calls that answer with a file (ExportAudit, ReportIncident).
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "common/callback_order.h"

namespace bulkhead::controller {

// The most file bytes in one streamed message.
inline constexpr size_t kStreamChunkBytes = size_t{1} << 20;

template <typename Chunk>
class ChunkWriter final : public grpc::ServerWriteReactor<Chunk> {
 public:
  ChunkWriter(std::vector<Chunk> chunks, const grpc::Status& failure) : chunks_(std::move(chunks)) {
    const ReactorTurn turn(this);
    if (!failure.ok()) {
      this->Finish(failure);
    } else {
      next();
    }
  }
  void OnWriteDone(bool ok) override {
    const ReactorTurn turn(this);
    operationDone(&chunks_);  // the write side: next_ was moved by the last callback
    if (!ok) {
      this->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    next();
  }
  void OnDone() override {
    afterEveryTurn(this);
    delete this;
  }

 private:
  void next() {
    if (next_ == chunks_.size()) {
      this->Finish(grpc::Status::OK);
      return;
    }
    const Chunk* chunk = &chunks_[next_++];
    operationStarts(&chunks_);
    this->StartWrite(chunk);
  }
  std::vector<Chunk> chunks_;
  size_t next_ = 0;
};

}  // namespace bulkhead::controller
