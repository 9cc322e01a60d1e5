#!/usr/bin/env bash
# Builds the previous release's three programs (bulkhead, bulkhead-agent, bulkhead-controller)
# for the compatibility test (tests/compat): the release named in tests/compat/previous-release,
# from its tag when this clone has it, else from the commit the tag names.
#   usage: scripts/build-previous-release.sh [OUT]   (default: ${BUILD_DIR:-build}/previous-release)
# OUT/src is the release's source (git archive), OUT/build its build tree: no tests, built for
# build time (-O0, no debug information, no hardening: _FORTIFY_SOURCE needs optimisation),
# warnings not errors (an older compiler's verdicts
# are not this release's to fix). Prints where the programs are.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${BUILD_DIR:-build}/previous-release}

read -r tag commit < <(grep -v '^#' tests/compat/previous-release | grep -m1 .)
if git rev-parse -q --verify "refs/tags/$tag^{commit}" >/dev/null; then
  rev=$(git rev-parse "refs/tags/$tag^{commit}")
  if [ "$rev" != "$commit" ]; then
    echo "build-previous-release: tag $tag names $rev, tests/compat/previous-release says $commit" >&2
    exit 1
  fi
elif ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
  echo "build-previous-release: neither tag $tag nor commit $commit is in this clone" \
       "(a shallow clone? fetch with --unshallow or fetch the tag)" >&2
  exit 1
fi

# The source is rewritten only when it is of another commit, so a second run rebuilds nothing.
if [ "$(cat "$OUT/src/.commit" 2>/dev/null)" != "$commit" ]; then
  rm -rf "$OUT/src" "$OUT/build"
  mkdir -p "$OUT/src"
  git archive "$commit" | tar -x -C "$OUT/src"
  echo "$commit" > "$OUT/src/.commit"
fi
cmake -S "$OUT/src" -B "$OUT/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE="-O0 -DNDEBUG" -DBULKHEAD_HARDEN=OFF -DBULKHEAD_TESTS=OFF -DBULKHEAD_WERROR=OFF >/dev/null
ninja -C "$OUT/build" -j "$(nproc)" bulkhead bulkhead-agent bulkhead-controller
echo "previous release $tag ($commit) built in $OUT/build:"
for p in cli/bulkhead agent/bulkhead-agent controller/bulkhead-controller; do
  echo "  $OUT/build/$p: $("$OUT/build/$p" --version 2>&1 | head -n 1)"
done
