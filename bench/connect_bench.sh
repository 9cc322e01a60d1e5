#!/bin/bash
# connect_bench.sh N [IDLE_SECONDS]: connects N agent streams (bulkhead-loadgen, distinct
# identities, one TCP+TLS connection each) to a fresh bulkhead-controller on loopback and prints
# connect time, the controller's RSS and its CPU use while the agents idle.
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
# every host is acknowledged (the load generator's streams acknowledge desired states at once)
# and the CPU time the controller, the load generators and the CLI spent during it.
# REPLICAS=K (default 1): K controllers (--replica r0 ... on PORT, PORT+1, ...) share one
# PostgreSQL 15 database (initdb in the temp dir, unix socket only, run as nobody; the binaries
# from scripts/lab-tools.sh, BULKHEAD_PG_BIN overrides), N/K streams each from one load generator
# per controller; RSS and CPU are then given per controller and summed, and the isolate goes to
# r0, which relays it to the hosts streaming to the others.
set -euo pipefail

N=${1:-1000}
IDLE=${2:-30}
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-$HERE/../build}
PORT=${PORT:-7443}
REPLICAS=${REPLICAS:-1}

if [[ $EUID -ne 0 ]]; then echo "connect_bench.sh: run as root" >&2; exit 2; fi
if ! [[ $N =~ ^[0-9]+$ && $N -ge 1 ]]; then echo "connect_bench.sh: N: invalid value \"$N\"" >&2; exit 2; fi
if ! [[ $IDLE =~ ^[0-9]+$ && $IDLE -ge 1 ]]; then echo "connect_bench.sh: IDLE: invalid value \"$IDLE\"" >&2; exit 2; fi
if ! [[ $REPLICAS =~ ^[0-9]+$ && $REPLICAS -ge 1 && $REPLICAS -le $N ]]; then
  echo "connect_bench.sh: REPLICAS: invalid value \"$REPLICAS\" (1 to N)" >&2; exit 2
fi
for bin in cli/bulkhead controller/bulkhead-controller bench/bulkhead-loadgen; do
  [[ -x $BUILD/$bin ]] || { echo "connect_bench.sh: $BUILD/$bin missing (set BUILD=...)" >&2; exit 2; }
done
PG_BIN=${BULKHEAD_PG_BIN:-/var/cache/bulkhead/lab-tools/postgresql-15/usr/lib/postgresql/15/bin}
if [[ $REPLICAS -gt 1 && ! -x $PG_BIN/initdb ]]; then
  echo "connect_bench.sh: $PG_BIN/initdb missing: run scripts/lab-tools.sh (or set BULKHEAD_PG_BIN)" >&2; exit 2
fi

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
CTLS=(); LGS=(); PG=""
stop() {  # stop PID SIGNAL SECONDS: signal it, wait up to SECONDS, then SIGKILL
  kill "-$2" "$1" 2>/dev/null && { timeout "$3" tail --pid="$1" -f /dev/null || kill -9 "$1"; } 2>/dev/null
  return 0
}
cleanup() {
  for p in "${LGS[@]}"; do stop "$p" INT 60; done
  for p in "${CTLS[@]}"; do stop "$p" TERM 20; done
  [[ -n $PG ]] && stop "$PG" INT 20
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

"$BUILD/cli/bulkhead" pki init --dir "$T/pki" --controller-ip 127.0.0.1 >/dev/null

STORE_ARGS=()
if [[ $REPLICAS -gt 1 ]]; then
  # PostgreSQL refuses root: its directory belongs to nobody, the way down to it is passable.
  chmod o+x "$T"; mkdir -m 0700 "$T/pg"; chown nobody: "$T/pg"
  as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups env LC_ALL=C TZ=UTC PATH=/usr/bin:/bin)
  "${as_nobody[@]}" "$PG_BIN/initdb" -D "$T/pg/data" -U bulkhead --auth=trust -E UTF8 --locale=C \
    --no-sync >"$T/initdb.log" 2>&1 || { cat "$T/initdb.log"; exit 1; }
  "${as_nobody[@]}" "$PG_BIN/postgres" -D "$T/pg/data" -k "$T/pg" -c listen_addresses= -c port=5432 \
    -c jit=off -c max_connections=200 -c shared_buffers=128MB >"$T/postgres.log" 2>&1 &
  PG=$!
  for _ in $(seq 300); do [[ -S $T/pg/.s.PGSQL.5432 ]] && break; sleep 0.1; done
  [[ -S $T/pg/.s.PGSQL.5432 ]] || { echo "postgres did not start:"; cat "$T/postgres.log"; exit 1; }
  (umask 077; openssl rand -hex 32 >"$T/audit.key")
  STORE_ARGS=(--store "postgresql://bulkhead@/postgres?host=$T/pg" --audit-key "$T/audit.key"
              --evidence-dir "$T/evidence")
fi

HB_ARGS=()
[[ -n ${HEARTBEAT:-} ]] && HB_ARGS=(--heartbeat-interval "$HEARTBEAT" --heartbeat-timeout "$(( ${HEARTBEAT%s} * 3 ))s")
for r in $(seq 0 $((REPLICAS - 1))); do
  REPLICA_ARGS=()
  [[ $REPLICAS -gt 1 ]] && REPLICA_ARGS=("${STORE_ARGS[@]}" --replica "r$r")
  ${CONTROLLER_PREFIX:-} "$BUILD/controller/bulkhead-controller" --listen "127.0.0.1:$((PORT + r))" \
    --identity "$T/pki/controller" --data-dir "$T/data-r$r" --log-level warn "${HB_ARGS[@]}" \
    "${REPLICA_ARGS[@]}" ${CONTROLLER_ARGS:-} >"$T/controller-r$r.log" 2>&1 &
  CTLS+=($!)
  # One at a time: the first one creates the database's schema.
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((PORT + r))") 2>/dev/null && break
    kill -0 "${CTLS[$r]}" 2>/dev/null || { echo "controller r$r died:"; cat "$T/controller-r$r.log"; exit 1; }
    sleep 0.1
  done
done
sleep 0.5

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }   # utime + stime
threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
sum_over_controllers() { local s=0; for p in "${CTLS[@]}"; do s=$((s + $("$1" "$p"))); done; echo "$s"; }

RSS0=$(sum_over_controllers rss_kib)
WC0=$(date +%s.%N)
for r in $(seq 0 $((REPLICAS - 1))); do
  n=$(( N / REPLICAS + (r < N % REPLICAS ? 1 : 0) ))
  prefix=loadgen; [[ $REPLICAS -gt 1 ]] && prefix=loadgen-r$r
  "$BUILD/bench/bulkhead-loadgen" --controller "127.0.0.1:$((PORT + r))" --ca-dir "$T/pki/ca" -n "$n" \
    --prefix "$prefix" >"$T/loadgen-r$r.log" 2>&1 &
  LGS+=($!)
done
# Wait (bounded: 10 s + 20 ms per stream) until every stream is connected.
LIMIT=$(( 100 + N / 5 ))
holding() { local c=0; for r in $(seq 0 $((REPLICAS - 1))); do grep -q "^holding" "$T/loadgen-r$r.log" && c=$((c + 1)); done; echo "$c"; }
for _ in $(seq "$LIMIT"); do
  [[ $(holding) -eq $REPLICAS ]] && break
  for p in "${LGS[@]}"; do kill -0 "$p" 2>/dev/null || break 2; done
  sleep 0.1
done
WC1=$(date +%s.%N)
cat "$T"/loadgen-r*.log
[[ $(holding) -eq $REPLICAS ]] || { echo "connect_bench.sh: not all streams connected"; tail -5 "$T"/controller-r*.log; exit 1; }

sleep 5   # let the handshake backlog drain before measuring idle
TCK=$(getconf CLK_TCK)
C0=$(sum_over_controllers cpu_ticks); W0=$(date +%s.%N)
sleep "$IDLE"
C1=$(sum_over_controllers cpu_ticks); W1=$(date +%s.%N)
RSS1=$(sum_over_controllers rss_kib)
LG_RSS=0; for p in "${LGS[@]}"; do LG_RSS=$((LG_RSS + $(rss_kib "$p"))); done
THR=$(threads "${CTLS[0]}")
PER_REPLICA=""
if [[ $REPLICAS -gt 1 ]]; then
  for r in $(seq 0 $((REPLICAS - 1))); do
    PER_REPLICA+=$(awk -v r="$r" -v k="$(rss_kib "${CTLS[$r]}")" 'BEGIN { printf " r%d %.1f MiB;", r, k / 1024 }')
  done
fi
if [[ ${ISOLATE_RUNS:-0} -gt 0 ]]; then
  CLI=("$BUILD/cli/bulkhead" --controller "127.0.0.1:$PORT" --identity "$T/pki/operators/admin" --json)
  enforced() { grep -o '"state": "enforced"' "$1" | wc -l; }
  echo
  sum_over_loadgens() { local s=0; for p in "${LGS[@]}"; do s=$((s + $(cpu_ticks "$p"))); done; echo "$s"; }
  for i in $(seq "$ISOLATE_RUNS"); do
    for op in isolate release; do
      # The CPU each side spent during the call: with everything on the same cores, their sum
      # over the number of cores is a floor under the call's time.
      c0=$(sum_over_controllers cpu_ticks); l0=$(sum_over_loadgens)
      s=$(date +%s.%N)
      { TIMEFORMAT='%U %S'; time "${CLI[@]}" "$op" --selector loadgen=1 --yes --reason "bench $i" --wait 120s \
          >"$T/$op.$i.json" 2>"$T/$op.$i.err"; } 2>"$T/$op.$i.time" || true
      e=$(date +%s.%N)
      c1=$(sum_over_controllers cpu_ticks); l1=$(sum_over_loadgens)
      awk -v op="$op" -v i="$i" -v s="$s" -v e="$e" -v ok="$(enforced "$T/$op.$i.json")" -v n="$N" \
          -v ctl=$(( c1 - c0 )) -v lg=$(( l1 - l0 )) -v tck="$TCK" -v cores="$(nproc)" \
          -v cli="$(awk '{ print $1 + $2 }' "$T/$op.$i.time")" -v k="$REPLICAS" '
        BEGIN {
          sum = ctl / tck + lg / tck + cli
          ctls = k > 1 ? "controllers" : "controller"
          printf "%s %d: %.3f s, %d of %d hosts acknowledged; CPU: %s %.2f s, load generators %.2f s, CLI %.2f s (%.2f s over %d cores: at least %.2f s)\n", op, i, e - s, ok, n, ctls, ctl / tck, lg / tck, cli, sum, cores, sum / cores
        }'
    done
  done
fi
for r in $(seq 0 $((REPLICAS - 1))); do
  kill -INT "${LGS[$r]}"; timeout 120 tail --pid="${LGS[$r]}" -f /dev/null || true
  tail -2 "$T/loadgen-r$r.log"
done
LGS=()

# The connect time: the load generator's own with one controller; with several, the wall time
# from starting the load generators to the last one holding (polled every 0.1 s).
if [[ $REPLICAS -eq 1 ]]; then
  CONNECT_S=$(sed -n 's/^RESULT .*connect_s=\([0-9.]*\).*/\1/p' "$T/loadgen-r0.log")
else
  CONNECT_S=$(awk -v a="$WC0" -v b="$WC1" 'BEGIN { printf "%.2f", b - a }')
fi
P50=$(sed -n 's/^RESULT .*p50_ms=\([0-9.]*\).*/\1/p' "$T"/loadgen-r*.log | sort -n | tail -1)
P99=$(sed -n 's/^RESULT .*p99_ms=\([0-9.]*\).*/\1/p' "$T"/loadgen-r*.log | sort -n | tail -1)
awk -v n="$N" -v c="$CONNECT_S" -v p50="$P50" -v p99="$P99" -v rss0="$RSS0" -v rss1="$RSS1" \
    -v c0="$C0" -v c1="$C1" -v w0="$W0" -v w1="$W1" -v tck="$TCK" -v thr="$THR" -v idle="$IDLE" \
    -v k="$REPLICAS" -v per="$PER_REPLICA" -v lg="$LG_RSS" '
BEGIN {
  cpu_pct = (c1 - c0) / tck / (w1 - w0) * 100
  what = k == 1 ? "controller" : k " controllers"
  printf "\n== bulkhead connect benchmark: %d agents, %s on 127.0.0.1 ==\n", n, what
  printf "connect time             %.2f s  (%.0f streams/s; per stream p50 %.1f ms, p99 %.1f ms%s)\n", c, n / c, p50, p99, k == 1 ? "" : ", the slowest load generator'"'"'s"
  printf "%-24s %.1f MiB  (%.1f MiB before agents; %d threads%s)\n", k == 1 ? "controller RSS" : "controllers RSS, summed", rss1 / 1024, rss0 / 1024, thr, k == 1 ? "" : " in r0"
  if (k > 1) printf "RSS per controller      %s\n", per
  printf "RSS per 1,000 agents     %.1f MiB total, %.1f MiB above the empty controller%s\n", rss1 / 1024 / n * 1000, (rss1 - rss0) / 1024 / n * 1000, k == 1 ? "" : "s"
  printf "load generators RSS      %.1f MiB (not in the figures above)\n", lg / 1024
  printf "CPU while idle (%ds)     %.2f %% of a core; %.3f %% of a core per 1,000 agents\n", idle, cpu_pct, cpu_pct / n * 1000
}'
