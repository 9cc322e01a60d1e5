#!/usr/bin/env bash
# Builds the three Debian packages (bulkhead-agent, bulkhead-controller, bulkhead) with
# debhelper into OUT (default build/deb), then checks them with lintian.
#   scripts/package.sh                     build from source (dpkg-buildpackage, ~10 min)
#   scripts/package.sh --prebuilt build    package the binaries of the build tree `build`
#                                          (scripts/build.sh), as CI does after testing them
#   --version V   the binary packages' version (default: debian/changelog's)
#   --out DIR     where the .deb files go (default BUILD_DIR/deb); emptied first
#   --no-lintian  skip lintian
#   --no-dbgsym   no -dbgsym packages (faster; the upgrade test's second version)
# The source is copied (tracked and untracked-but-not-ignored files) to OUT/src and built there,
# so the work tree gets no build droppings. Exit 0 only if the packages built and lintian
# reported no error or warning beyond the tags justified in debian/*.lintian-overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="" prebuilt="" version="" lintian=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prebuilt) prebuilt=$(realpath "$2"); shift 2 ;;
    --version) version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-lintian) lintian=0; shift ;;
    --no-dbgsym) export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} noddebs"; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package.sh: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
  esac
done
out=$(realpath -m "${out:-${BUILD_DIR:-build}/deb}")
if [ -n "$prebuilt" ] && [ ! -f "$prebuilt/build.ninja" ]; then
  echo "package.sh: --prebuilt $prebuilt: not a build tree (run scripts/build.sh)" >&2
  exit 2
fi
for tool in dpkg-buildpackage dh lintian; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool missing (scripts/install-deps.sh)" >&2; exit 2; }
done

rm -rf "$out"
mkdir -p "$out/src"
# Files deleted in the work tree but still in the index are skipped (--ignore-failed-read).
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$out/src"
cd "$out/src"
rev=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
echo "package.sh: building from $root (git $rev) in $out/src${prebuilt:+, binaries of $prebuilt}"
BULKHEAD_PREBUILT="$prebuilt" BULKHEAD_DEB_VERSION="$version" BULKHEAD_GIT_REVISION="$rev" \
  dpkg-buildpackage --build=binary --no-sign ${prebuilt:+--no-check-builddeps} \
  -j"$(nproc)" >"$out/build.log" 2>&1 || {
  tail -n 40 "$out/build.log"
  echo "package.sh: dpkg-buildpackage failed (whole log: $out/build.log)" >&2
  exit 1
}
ls -1 "$out"/*.deb

if [ "$lintian" = 1 ]; then
  changes=$(ls "$out"/*.changes)
  # --fail-on warning: a new warning fails the build; justified tags are overridden in
  # debian/*.lintian-overrides with their reason.
  if lintian --fail-on error,warning --info "$changes"; then
    echo "package.sh: lintian clean"
  else
    echo "package.sh: lintian found errors or warnings (above)" >&2
    exit 1
  fi
fi
