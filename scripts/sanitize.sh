#!/usr/bin/env bash
# Builds bulkhead with clang and sanitizers in a build directory of its own, then runs tests:
#   scripts/sanitize.sh asan   build-asan: ASan + UBSan (+ libFuzzer coverage, so the same build
#                              holds the fuzz targets that scripts/fuzz.sh runs). Runs every
#                              unit test (the fuzz corpus replays included) and, as root, the
#                              kernel tests. The lab tests (tests/integration) are not run.
#   scripts/sanitize.sh tsan   build-tsan: TSan. Builds and runs the controller's and agent's
#                              RPC tests and the agent's threaded workers (tsan case below).
#   scripts/sanitize.sh MODE --build-only   builds, runs nothing (test.sh builds ahead with it).
# Prints the CTest summary; exit status non-zero when a build or a test fails. A UBSan finding
# aborts its test; ASan, LSan and TSan reports fail theirs. Suppressions: scripts/sanitizers/.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/sanitize.sh asan|tsan [--build-only]}
build_only=false
[ "${2:-}" = "--build-only" ] && build_only=true
# shellcheck source=sanitizers/env.sh
source scripts/sanitizers/env.sh

# -O1 and line tables: fast enough to run, cheap to compile, symbolized stacks.
common_args=(-G Ninja -DCMAKE_CXX_COMPILER=clang++
  -DCMAKE_BUILD_TYPE=Sanitize "-DCMAKE_CXX_FLAGS_SANITIZE=-O1 -gline-tables-only"
  -DBULKHEAD_WERROR=OFF)
# Warnings are gated by the gcc build (scripts/build.sh) and clang-tidy, not here.
if [ -n "${BULKHEAD_SANITIZE_LAUNCHER:-}" ]; then
  common_args+=("-DCMAKE_CXX_COMPILER_LAUNCHER=${BULKHEAD_SANITIZE_LAUNCHER}")
fi
jobs=${BULKHEAD_BUILD_JOBS:-$(nproc)}

case "$mode" in
  asan)
    dir=${BUILD_DIR_ASAN:-build-asan}
    cmake -S . -B "$dir" "${common_args[@]}" -DBULKHEAD_SANITIZE=address,undefined \
      -DBULKHEAD_FUZZ=ON >/dev/null
    ninja -C "$dir" -j "$jobs"
    $build_only && exit 0
    cd "$dir"
    # Unit tests (fuzz corpus replays included) and kernel tests (label root, RUN_SERIAL);
    # not the lab tests, nor the package and compat tests (labels package and compat: they need
    # the normal build's .deb files and the previous release's build). Root-only tests skip themselves when not root. Left out: two tests
    # whose assertions are resource figures that ASan changes by design (peak RSS with its
    # shadow memory and quarantine; wall time at its 2-3x slowdown).
    exec ctest -j 2 --output-on-failure --timeout 900 -LE 'package|compat' \
      -E '^lab_|^EvidenceServerTest\.CaptureLargerThan64MiBStreamsThrough$|^Capture\.EngineTimeForABusyHost$'
    ;;
  tsan)
    dir=${BUILD_DIR_TSAN:-build-tsan}
    # The threaded code: the controller's and the agent's RPC tests (gRPC callback threads,
    # bh-contain, the fleet and evidence hubs, the agent's session, the signals' thread behind
    # the agent stream), the reconcile and capture workers, the status and signal sockets.
    # Debian's gRPC is not built with TSan; it locks with absl::Mutex, so absl is rebuilt with TSan (build-absl-tsan.sh) and put first on the
    # library path, and env.sh's ignore_noninstrumented_modules=1 drops what gRPC's own
    # uninstrumented code does. sanitizer_grpc_canary proves a race in a handler still shows.
    targets=(controller_server_test controller_containment_test controller_host_actions_test
      controller_blocks_test controller_evidence_test controller_audit_export_test
      controller_peer_gate_test controller_agent_signal_test agent_rpc_test evidence_uploader_test
      agent_daemon_test capture_worker_test sanitizer_canary sanitizer_grpc_canary)
    absl_dir=$(realpath -m "$dir/absl-tsan")
    scripts/sanitizers/build-absl-tsan.sh "$absl_dir"
    export LD_LIBRARY_PATH="$absl_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    cmake -S . -B "$dir" "${common_args[@]}" -DBULKHEAD_SANITIZE=thread >/dev/null
    ninja -C "$dir" -j "$jobs" "${targets[@]}"
    $build_only && exit 0
    # The instrumented absl must be the one loaded, or the reports are gRPC's hand-offs.
    # ldd's output is read whole first: piped into grep -q under pipefail, grep's early exit
    # can kill ldd with SIGPIPE and fail the check at random (it did, once, in CI).
    loaded=$(ldd "$dir/tests/unit/controller/controller_server_test")
    if ! grep -q "libabsl_synchronization.* => $absl_dir/" <<<"$loaded"; then
      echo "sanitize.sh: the TSan-built absl in $absl_dir is not the one loaded" >&2
      exit 1
    fi
    cd "$dir"
    # Only the binaries built above: other targets' tests are "<target>_NOT_BUILT". Left out,
    # as under ASan: the peak-RSS assertion, which TSan's shadow memory changes by design.
    exec ctest -j 2 --output-on-failure --timeout 900 -L unit -LE fuzz \
      -E '_NOT_BUILT$|^EvidenceServerTest\.CaptureLargerThan64MiBStreamsThrough$'
    ;;
  *)
    echo "sanitize.sh: unknown mode \"$mode\" (asan or tsan)" >&2
    exit 2
    ;;
esac
