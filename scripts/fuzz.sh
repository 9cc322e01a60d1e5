#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for a bounded time, starting from its seed corpus,
# one target per core at a time.
#   scripts/fuzz.sh [SECONDS]   (default ${BULKHEAD_FUZZ_SECONDS:-20} per target; seed
#                               ${BULKHEAD_FUZZ_SEED:-1}, 0 for a random one)
# Builds the targets in build-asan (the ASan + UBSan + libFuzzer build of scripts/sanitize.sh,
# configured here if needed). New inputs go to a scratch directory, not to the committed
# corpus. A crash, leak, sanitizer report or timeout fails the target; its input is kept as
# build-asan/fuzz-artifacts/<target>-crash-* (add it to fuzz/corpus/<target>/ with the fix).
# Ends with "fuzz: N passed, N failed"; exit status 1 when a target failed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${BULKHEAD_FUZZ_SECONDS:-20}}
# A fixed seed by default, so a failure in CI reproduces with the same command; 0 = random.
seed=${BULKHEAD_FUZZ_SEED:-1}
# shellcheck source=sanitizers/env.sh
source scripts/sanitizers/env.sh
dir=${BUILD_DIR_ASAN:-build-asan}
if [ ! -f "$dir/build.ninja" ]; then
  launcher=()
  [ -n "${BULKHEAD_SANITIZE_LAUNCHER:-}" ] && launcher=("-DCMAKE_CXX_COMPILER_LAUNCHER=${BULKHEAD_SANITIZE_LAUNCHER}")
  cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Sanitize \
    "-DCMAKE_CXX_FLAGS_SANITIZE=-O1 -gline-tables-only" -DBULKHEAD_WERROR=OFF \
    -DBULKHEAD_SANITIZE=address,undefined -DBULKHEAD_FUZZ=ON "${launcher[@]}" >/dev/null
fi
ninja -C "$dir" -j "${BULKHEAD_BUILD_JOBS:-$(nproc)}" fuzzers

artifacts="$PWD/$dir/fuzz-artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$artifacts"
# fuzz_one NAME CORPUS: runs one target; its verdict goes to $scratch/NAME.verdict.
fuzz_one() {
  local name=$1 corpus=$2 bin="$dir/fuzz/$1" log="$scratch/$1.log" start runs
  mkdir -p "$scratch/$name"
  start=$(date +%s)
  # -timeout: one input running over 10 s is a hang; -rss_limit_mb: a blow-up is a finding.
  if "$bin" -seed="$seed" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$name-" \
      "$scratch/$name" "$corpus" >"$log" 2>&1; then
    runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "passed ($(( $(date +%s) - start )) s, $runs runs)" >"$scratch/$name.verdict"
  else
    echo "FAILED" >"$scratch/$name.verdict"
  fi
}

# Targets run side by side, one per core (${BULKHEAD_FUZZ_JOBS:-$(nproc)}), each for its full
# time; results are printed in name order.
parallel=${BULKHEAD_FUZZ_JOBS:-$(nproc)}
names=()
for corpus in fuzz/corpus/*/; do
  name=$(basename "$corpus")
  names+=("$name")
  [ -x "$dir/fuzz/$name" ] || continue
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  fuzz_one "$name" "$corpus" &
done
wait
passed=0
failed=0
failed_names=()
for name in "${names[@]}"; do
  if [ ! -x "$dir/fuzz/$name" ]; then
    echo "fuzz: $name: no binary $dir/fuzz/$name (corpus without a target?)"
    failed=$((failed + 1)); failed_names+=("$name"); continue
  fi
  verdict=$(cat "$scratch/$name.verdict" 2>/dev/null || echo "FAILED (no verdict)")
  if [[ $verdict == passed* ]]; then
    echo "fuzz: $name $verdict"
    passed=$((passed + 1))
  else
    echo "fuzz: $name $verdict; the end of its output:"
    tail -n 60 "$scratch/$name.log" | sed 's/^/    /'
    failed=$((failed + 1)); failed_names+=("$name")
  fi
done
[ ${#failed_names[@]} -gt 0 ] && echo "fuzz: failed targets: ${failed_names[*]}"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
