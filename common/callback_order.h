// The orderings of gRPC's callback API that ThreadSanitizer cannot see, told to it.
//
// gRPC runs a reactor's OnDone after its constructor and every other callback of it have
// returned (grpcpp/support/server_callback.h, client_callback.h). gRPC enforces that inside its
// core, which TSan cannot see when gRPC is not built with TSan (Debian's is not), so without
// this TSan reports OnDone's clean-up (the reactor deleted, its buffers freed) as racing with
// the callbacks before it. Only that order is announced: callbacks that may run at the same
// time (OnReadDone and OnWriteDone of one stream) are not ordered with each other, so a race
// between them is still reported. Without TSan all of this compiles to nothing.
//
//   Reactor() { const ReactorTurn turn(this); ... StartRead(&in_); }
//   void OnReadDone(bool ok) override { const ReactorTurn turn(this); ... }
//   void OnDone() override { afterEveryTurn(this); delete this; }
//
// The other hand-off TSan cannot see: an operation started on one thread completes in a
// callback on another. That is every chain of reads or writes: OnWriteDone starts the next
// write, whose OnWriteDone may run on a different gRPC thread and reuses the buffer the last one
// filled; or a worker of ours calls StartRead when it is done with the last message.
// operationStarts(&buffer) just before StartRead(&buffer) or StartWrite(&buffer), and
// operationDone(&buffer) first in the matching OnReadDone or OnWriteDone: what the starting
// thread did happens before the callback. Keyed by the buffer (or one member standing for the
// stream's write side when writes use several buffers), so a read and a write of one stream
// stay unordered with each other. A chain whose state is guarded by a mutex needs none of it.
#pragma once

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BULKHEAD_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define BULKHEAD_TSAN 1
#endif

#ifdef BULKHEAD_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace bulkhead {

// What this thread did so far happens before a later tsanAcquire(key). No-ops without TSan.
inline void tsanRelease([[maybe_unused]] const void* key) {
#ifdef BULKHEAD_TSAN
  __tsan_release(const_cast<void*>(key));
#endif
}
inline void tsanAcquire([[maybe_unused]] const void* key) {
#ifdef BULKHEAD_TSAN
  __tsan_acquire(const_cast<void*>(key));
#endif
}

// Marks a constructor or callback of `reactor` (not OnDone): when it returns, what it did
// happens before OnDone's afterEveryTurn(reactor).
class ReactorTurn {
 public:
  explicit ReactorTurn(const void* reactor) : reactor_(reactor) {}
  ~ReactorTurn() { tsanRelease(reactor_); }
  ReactorTurn(const ReactorTurn&) = delete;
  ReactorTurn& operator=(const ReactorTurn&) = delete;

 private:
  const void* reactor_;
};

// First statement of OnDone: everything the constructor and callbacks of `reactor` did happens
// before what follows.
inline void afterEveryTurn(const void* reactor) { tsanAcquire(reactor); }

// Just before StartRead(buffer) or StartWrite(buffer) on a thread of ours.
inline void operationStarts(const void* buffer) { tsanRelease(buffer); }

// First in the OnReadDone or OnWriteDone of that operation.
inline void operationDone(const void* buffer) { tsanAcquire(buffer); }

}  // namespace bulkhead
