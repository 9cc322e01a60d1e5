#!/usr/bin/env bash
# Configures and builds bulkhead with CMake + Ninja into ${BUILD_DIR:-build}.
# Warnings are errors (as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBULKHEAD_WERROR=ON
ninja -C "$BUILD_DIR" -j "$(nproc)"
