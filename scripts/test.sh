#!/usr/bin/env bash
# One command for the whole test suite on a fresh Debian 12 machine, as root:
# installs dependencies, builds, runs unit tests, then the root-only kernel and lab tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
# Leftovers of an interrupted earlier run (namespaces whose creator is gone).
python3 tests/lab/bhlab.py cleanup >/dev/null 2>&1 || true
cd "$BUILD_DIR"
# One run so the closing summary covers everything. Unit tests run two at a time; tests
# labelled "root" (kernel and lab) are RUN_SERIAL: they build namespaces and time traffic.
exec ctest -j 2 --output-on-failure --timeout 900 "$@"
