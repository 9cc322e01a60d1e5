#!/usr/bin/env bash
# One command for the demo on a fresh Debian 12 machine, as root: installs dependencies,
# builds, and runs a scripted incident in a network-namespace lab (tests/lab).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec python3 tests/lab/demo.py --build-dir "${BUILD_DIR:-build}"
