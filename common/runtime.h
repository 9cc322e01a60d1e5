// Process-wide settings every bulkhead program applies first thing in main().
#pragma once

namespace bulkhead {

// Turns off absl::Mutex deadlock detection. Debian's absl is built with it on (kAbort): every
// lock that gRPC takes then walks and grows a global lock-order graph, which cost the
// controller much of its CPU with thousands of agent streams and made fan-out superlinear.
// Detection is a debugging aid; it never made a locking bug safe, only loud.
void tuneProcessRuntime();

}  // namespace bulkhead
