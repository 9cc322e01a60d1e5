#!/bin/bash
# connect_bench.sh N [IDLE_SECONDS]: connects N agent streams (bulkhead-loadgen, one process,
# distinct identities, one TCP+TLS connection each) to a fresh bulkhead-controller on loopback
# and prints connect time, the controller's RSS and its CPU use while the agents idle.
#
# Runs as root. Everything happens inside a throw-away network namespace (unshare -n, own
# loopback), so no port or firewall of the machine is touched.
#
# Environment: BUILD (build dir, default: ../build next to this script), HEARTBEAT (heartbeat
# interval the controller tells agents, default the controller's own), PORT (default 7443),
# CONTROLLER_ARGS (more controller flags, split on spaces, e.g. "--grpc-arg grpc.http2.bdp_probe=0"),
# CONTROLLER_PREFIX (a command the controller runs under, e.g. "heaptrack -o /tmp/ht": then the
# figures are the wrapper's, read the profile instead),
# KEEP=1 keeps the temp dir, ISOLATE_RUNS=R: then R times isolate every stream with one
# `bulkhead isolate --selector loadgen=1 --yes` and release them, printing each call's time until
# every host is acknowledged (the load generator's streams acknowledge desired states at once).
set -euo pipefail

N=${1:-1000}
IDLE=${2:-30}
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-$HERE/../build}
PORT=${PORT:-7443}

if [[ $EUID -ne 0 ]]; then echo "connect_bench.sh: run as root" >&2; exit 2; fi
if ! [[ $N =~ ^[0-9]+$ && $N -ge 1 ]]; then echo "connect_bench.sh: N: invalid value \"$N\"" >&2; exit 2; fi
if ! [[ $IDLE =~ ^[0-9]+$ && $IDLE -ge 1 ]]; then echo "connect_bench.sh: IDLE: invalid value \"$IDLE\"" >&2; exit 2; fi
for bin in cli/bulkhead controller/bulkhead-controller bench/bulkhead-loadgen; do
  [[ -x $BUILD/$bin ]] || { echo "connect_bench.sh: $BUILD/$bin missing (set BUILD=...)" >&2; exit 2; }
done

# Re-enter in a private network namespace with only loopback.
if [[ -z ${BULKHEAD_BENCH_NETNS:-} ]]; then
  export BULKHEAD_BENCH_NETNS=1 BUILD
  exec unshare --net -- "$0" "$@"
fi
ip link set lo up

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $((N + 1000)) ]]; then
  ulimit -n $((N * 2 + 1000)) 2>/dev/null || {
    echo "connect_bench.sh: RLIMIT_NOFILE $(ulimit -n) too low for $N streams" >&2; exit 2; }
fi

T=$(mktemp -d /tmp/bulkhead-bench.XXXXXX)
CTL=""; LG=""
cleanup() {
  [[ -n $LG ]] && kill -INT "$LG" 2>/dev/null && { timeout 60 tail --pid="$LG" -f /dev/null || kill -9 "$LG"; } 2>/dev/null
  [[ -n $CTL ]] && kill -TERM "$CTL" 2>/dev/null && { timeout 20 tail --pid="$CTL" -f /dev/null || kill -9 "$CTL"; } 2>/dev/null
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

"$BUILD/cli/bulkhead" pki init --dir "$T/pki" --controller-ip 127.0.0.1 >/dev/null

HB_ARGS=()
[[ -n ${HEARTBEAT:-} ]] && HB_ARGS=(--heartbeat-interval "$HEARTBEAT" --heartbeat-timeout "$(( ${HEARTBEAT%s} * 3 ))s")
${CONTROLLER_PREFIX:-} "$BUILD/controller/bulkhead-controller" --listen "127.0.0.1:$PORT" --identity "$T/pki/controller" \
  --data-dir "$T/data" --log-level warn "${HB_ARGS[@]}" ${CONTROLLER_ARGS:-} >"$T/controller.log" 2>&1 &
CTL=$!

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }   # utime + stime
threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }

for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$CTL" 2>/dev/null || { echo "controller died:"; cat "$T/controller.log"; exit 1; }
  sleep 0.1
done
sleep 0.5
RSS0=$(rss_kib "$CTL")

: >"$T/loadgen.log"
"$BUILD/bench/bulkhead-loadgen" --controller "127.0.0.1:$PORT" --ca-dir "$T/pki/ca" -n "$N" \
  >"$T/loadgen.log" 2>&1 &
LG=$!
# Wait (bounded: 10 s + 20 ms per stream) until every stream is connected.
LIMIT=$(( 100 + N / 5 ))
for _ in $(seq "$LIMIT"); do
  grep -q "^holding" "$T/loadgen.log" && break
  kill -0 "$LG" 2>/dev/null || break
  sleep 0.1
done
cat "$T/loadgen.log"
grep -q '^holding' "$T/loadgen.log" || { echo "connect_bench.sh: not all streams connected"; tail -5 "$T/controller.log"; exit 1; }

sleep 5   # let the handshake backlog drain before measuring idle
TCK=$(getconf CLK_TCK)
C0=$(cpu_ticks "$CTL"); W0=$(date +%s.%N)
sleep "$IDLE"
C1=$(cpu_ticks "$CTL"); W1=$(date +%s.%N)
RSS1=$(rss_kib "$CTL")
THR=$(threads "$CTL")
if [[ ${ISOLATE_RUNS:-0} -gt 0 ]]; then
  CLI=("$BUILD/cli/bulkhead" --controller "127.0.0.1:$PORT" --identity "$T/pki/operators/admin" --json)
  enforced() { grep -o '"ENFORCED"' "$1" | wc -l; }
  echo
  for i in $(seq "$ISOLATE_RUNS"); do
    for op in isolate release; do
      s=$(date +%s.%N)
      "${CLI[@]}" "$op" --selector loadgen=1 --yes --reason "bench $i" --wait 120s >"$T/$op.$i.json" 2>"$T/$op.$i.err" || true
      e=$(date +%s.%N)
      awk -v op="$op" -v i="$i" -v s="$s" -v e="$e" -v ok="$(enforced "$T/$op.$i.json")" -v n="$N" \
        'BEGIN { printf "%s %d: %.3f s, %d of %d hosts acknowledged\n", op, i, e - s, ok, n }'
    done
  done
fi
kill -INT "$LG"; timeout 120 tail --pid="$LG" -f /dev/null || true
tail -2 "$T/loadgen.log"
LG=""

CONNECT_S=$(sed -n 's/^RESULT .*connect_s=\([0-9.]*\).*/\1/p' "$T/loadgen.log")
P50=$(sed -n 's/^RESULT .*p50_ms=\([0-9.]*\).*/\1/p' "$T/loadgen.log")
P99=$(sed -n 's/^RESULT .*p99_ms=\([0-9.]*\).*/\1/p' "$T/loadgen.log")
awk -v n="$N" -v c="$CONNECT_S" -v p50="$P50" -v p99="$P99" -v rss0="$RSS0" -v rss1="$RSS1" \
    -v c0="$C0" -v c1="$C1" -v w0="$W0" -v w1="$W1" -v tck="$TCK" -v thr="$THR" -v idle="$IDLE" '
BEGIN {
  cpu_pct = (c1 - c0) / tck / (w1 - w0) * 100
  printf "\n== bulkhead connect benchmark: %d agents, controller on 127.0.0.1 ==\n", n
  printf "connect time             %.2f s  (%.0f streams/s; per stream p50 %.1f ms, p99 %.1f ms)\n", c, n / c, p50, p99
  printf "controller RSS           %.1f MiB  (%.1f MiB before agents; %d threads)\n", rss1 / 1024, rss0 / 1024, thr
  printf "RSS per 1,000 agents     %.1f MiB total, %.1f MiB above the empty controller\n", rss1 / 1024 / n * 1000, (rss1 - rss0) / 1024 / n * 1000
  printf "CPU while idle (%ds)     %.2f %% of a core; %.3f %% of a core per 1,000 agents\n", idle, cpu_pct, cpu_pct / n * 1000
}'
