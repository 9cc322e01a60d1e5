#!/usr/bin/env bash
# One command for the whole test suite on a fresh Debian 12 machine, as root (.ci/run calls it):
#   1. normal   installs dependencies, builds (gcc, warnings are errors), runs every test: unit,
#               then the root-only kernel and lab tests.
#   2. asan     scripts/sanitize.sh asan: unit (with the fuzz corpus replays) and kernel tests
#               under ASan + UBSan (clang, build-asan).
#   3. tsan     scripts/sanitize.sh tsan: the controller/agent RPC tests under TSan (build-tsan).
#   4. fuzz     scripts/fuzz.sh: each libFuzzer target for ${BULKHEAD_FUZZ_SECONDS:-20} s.
#   5. tidy     scripts/clang_tidy_changed.py: clang-tidy on the lines changed since
#               scripts/clang-tidy-base, warnings-clean (run in the background as soon as
#               stage 1's build ends; this stage prints its output).
#   6. package  (runs right after stage 1, on its build tree) scripts/package.sh: the Debian
#               packages of stage 1's binaries (lintian-clean),
#               and a second version of them; then the tests labelled "package": install,
#               upgrade, purge and an upgrade while isolated on a clean Debian 12 root made by
#               mmdebstrap from the package mirror (cached in BUILD_DIR/pkgroot).
#   7. compat   (also on stage 1's build tree) scripts/build-previous-release.sh: the previous
#               release's programs from its tag (tests/compat/previous-release); then the test
#               labelled "compat": that release's agent with this controller and the reverse,
#               isolating and releasing in the lab.
# Stage 1 always runs. Locally BULKHEAD_CI_STAGES (comma-separated, e.g. "asan,fuzz"; "none"
# for stage 1 only) picks the others; with CI=true all run whatever it says. Arguments go to
# stage 1's ctest. Every stage runs even if an earlier one failed; the exit status is non-zero
# if any failed, and the last line is the total over all stages: "total: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR

all_stages="package,compat,asan,tsan,fuzz,tidy"
stages=${BULKHEAD_CI_STAGES:-$all_stages}
if [ "${CI:-}" = "true" ]; then stages=$all_stages; fi

logs=$(mktemp -d)
# On exit, a background build still running (an interrupted run) is stopped.
trap '[ -e "$logs/prebuild.pid" ] && pkill -P "$(cat "$logs/prebuild.pid")" 2>/dev/null; rm -rf "$logs"' EXIT
summary=()
# elapsed: minutes and seconds since test.sh started.
elapsed() { printf '%d:%02d' $((SECONDS / 60)) $((SECONDS % 60)); }
total_passed=0
total_failed=0
any_failed=0

# run_stage NAME CMD...: runs CMD with its output shown and kept, then counts its results from
# its last summary line (CTest's or "N passed, N failed"); a stage that printed none counts as
# one failure.
run_stage() {
  local name=$1
  shift
  # The time since test.sh started, so a log cut short by CI's time limit shows where it went.
  echo "=== stage $name (at $(elapsed)): $*"
  local start=$SECONDS
  "$@" 2>&1 | tee "$logs/$name.log"
  local rc=${PIPESTATUS[0]}
  local secs=$((SECONDS - start))
  local passed="" failed="" line
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$logs/$name.log" | tail -n 1)
  if [ -n "$line" ]; then
    failed=$(sed -E 's/^[0-9]+% tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    passed=$(( $(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line") - failed ))
  else
    line=$(grep -E '^([a-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$logs/$name.log" | tail -n 1)
    if [ -n "$line" ]; then
      passed=$(sed -E 's/^([a-z-]+: )?([0-9]+) passed.*/\2/' <<<"$line")
      failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
    fi
  fi
  if [ -z "$passed" ]; then passed=0; failed=1; fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  [ "$rc" -ne 0 ] && any_failed=1
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  summary+=("$(printf '%-7s %5d passed, %3d failed  exit %-3d %5d s' "$name" "$passed" "$failed" "$rc" "$secs")")
}

# Builds ahead: while stage 1's tests run (the lab tests mostly wait on the network), the
# clang-tidy check (it needs only stage 1's build tree) and the builds of the later stages (the
# previous release, build-asan, build-tsan) run one after the other in the background at the
# lowest CPU priority, so the tests keep the CPU they need. The tidy stage prints that run's
# output. Each other later stage first waits for its build to end (prebuild_wait), then builds
# again in the foreground: a no-op when the background build succeeded, the failure shown when
# it did not. Build output goes to $logs/prebuild-NAME.log and is shown only if it failed.
prebuild_start() {
  local wanted=() name
  for name in tidy compat asan tsan; do
    case ",$stages," in *",$name,"*) wanted+=("$name") ;; esac
  done
  [ ${#wanted[@]} -eq 0 ] && return
  for name in "${wanted[@]}"; do : >"$logs/prebuild-$name.wanted"; done
  (
    for name in "${wanted[@]}"; do
      start=$SECONDS
      case "$name" in
        tidy) nice -n 19 scripts/clang_tidy_changed.py --build "$BUILD_DIR" ;;
        compat) nice -n 19 scripts/build-previous-release.sh "$BUILD_DIR/previous-release" ;;
        *) nice -n 19 scripts/sanitize.sh "$name" --build-only ;;
      esac >"$logs/prebuild-$name.log" 2>&1
      echo "$? $((SECONDS - start)) $(elapsed)" >"$logs/prebuild-$name.done"
    done
  ) </dev/null >/dev/null 2>&1 &
  # A file, not a variable: this runs inside run_stage's pipeline, a subshell.
  echo $! >"$logs/prebuild.pid"
  echo "test.sh: building ahead in the background (pid $!): ${wanted[*]}"
}

# prebuild_wait NAME: waits for NAME's background run, if one was started; prints how long it
# took and when it ended. Returns 0 when it ran and succeeded, 1 otherwise.
prebuild_wait() {
  local name=$1
  [ -e "$logs/prebuild-$name.wanted" ] || return 1
  local pid rc secs at
  pid=$(cat "$logs/prebuild.pid")
  while [ ! -e "$logs/prebuild-$name.done" ] && kill -0 "$pid" 2>/dev/null; do
    sleep 2
  done
  read -r rc secs at 2>/dev/null <"$logs/prebuild-$name.done" || rc=""
  if [ "$rc" != 0 ]; then
    echo "test.sh: the background run for $name failed (exit ${rc:-none}); its log ends:"
    tail -n 40 "$logs/prebuild-$name.log"
    return 1
  fi
  echo "test.sh: the background run for $name took $secs s, ended at $at"
}

# The tidy stage: the background run's output and exit status, or a run here when none ended.
tidy_stage() {
  prebuild_wait tidy >/dev/null
  local rc="" secs at
  read -r rc secs at 2>/dev/null <"$logs/prebuild-tidy.done"
  if [ -z "$rc" ]; then
    scripts/clang_tidy_changed.py --build "$BUILD_DIR"
    return
  fi
  cat "$logs/prebuild-tidy.log"
  echo "test.sh: this ran in the background: $secs s, ended at $at"
  return "$rc"
}

normal_stage() {
  scripts/install-deps.sh || return
  scripts/build.sh || return
  prebuild_start
  # Leftovers of an interrupted earlier run (namespaces whose creator is gone).
  python3 tests/lab/bhlab.py cleanup >/dev/null 2>&1 || true
  # One run so its summary covers every test. Unit tests run two at a time; tests labelled
  # "root" (kernel and lab) are RUN_SERIAL: they build namespaces and time traffic. The
  # "package" and "compat" tests need the packages and the previous release: stages 6 and 7.
  (cd "$BUILD_DIR" && ctest -j 2 --output-on-failure --timeout 900 -LE 'package|compat' "$@")
}

package_stage() {
  scripts/package.sh --prebuilt "$BUILD_DIR" || return
  local next
  next="$(dpkg-parsechangelog -S Version)+next"
  scripts/package.sh --prebuilt "$BUILD_DIR" --version "$next" --out "$BUILD_DIR/deb-next" \
    --no-lintian --no-dbgsym || return
  (cd "$BUILD_DIR" && ctest --output-on-failure --timeout 2400 -L package)
}

compat_stage() {
  prebuild_wait compat || true
  scripts/build-previous-release.sh "$BUILD_DIR/previous-release" || return
  (cd "$BUILD_DIR" && ctest --output-on-failure --timeout 900 -L compat)
}

run_stage normal normal_stage "$@"
for stage in ${stages//,/ }; do
  case "$stage" in
    none) ;;
    package) run_stage package package_stage ;;
    compat) run_stage compat compat_stage ;;
    asan) prebuild_wait asan || true; run_stage asan scripts/sanitize.sh asan ;;
    tsan) prebuild_wait tsan || true; run_stage tsan scripts/sanitize.sh tsan ;;
    fuzz) run_stage fuzz scripts/fuzz.sh ;;
    tidy) run_stage tidy tidy_stage ;;
    *) echo "test.sh: unknown stage \"$stage\" in BULKHEAD_CI_STAGES ($all_stages, none)"; any_failed=1 ;;
  esac
done

echo "=== stages"
printf '%s\n' "${summary[@]}"
echo "total: $total_passed passed, $total_failed failed"
exit "$any_failed"
