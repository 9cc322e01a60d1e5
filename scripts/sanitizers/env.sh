# Sanitizer run-time options for the sanitizer and fuzz builds (sourced by scripts/sanitize.sh
# and scripts/fuzz.sh). Test binaries also run at build time (gtest_discover_tests), so these
# are exported before building.
_supp_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export ASAN_OPTIONS="detect_leaks=1:strict_init_order=1:check_initialization_order=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:report_error_type=1"
export LSAN_OPTIONS="suppressions=${_supp_dir}/lsan.supp:print_suppressions=0"
# TSan: ignore_noninstrumented_modules=1 drops the memory calls (memcpy, free, ...) made by
# libraries built without TSan (Debian's gRPC and protobuf), whose other accesses TSan cannot
# see anyway; our code and the headers compiled into it stay checked (sanitize.sh, tsan).
export TSAN_OPTIONS="suppressions=${_supp_dir}/tsan.supp:second_deadlock_stack=1:halt_on_error=0:exitcode=66:print_suppressions=0:ignore_noninstrumented_modules=1"
if command -v llvm-symbolizer >/dev/null 2>&1; then
  export ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer)"
  export TSAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH}"
fi
unset _supp_dir
