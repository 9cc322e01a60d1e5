#!/usr/bin/env bash
# Builds Debian's own abseil, the exact version installed (libabsl-dev), with ThreadSanitizer
# into DIR as shared libraries with the same sonames, for scripts/sanitize.sh tsan to put first
# on LD_LIBRARY_PATH.
#
# Why: Debian's gRPC locks with absl::Mutex and waits on absl::CondVar. Built without TSan, those
# are invisible to it, so every hand-off between gRPC's threads looked like a race (1,162
# reports in one RPC test binary). Built with TSan, absl's Mutex and CondVar announce every lock,
# unlock, wait and signal to TSan (absl's own annotations), and the hand-offs are seen.
#
# The source comes from the package mirror through apt, signature-checked like any package, with
# a private apt configuration (deb-src for the suites the machine already uses): the machine's
# sources and lists are not touched. Idempotent: DIR/.version names what is built there.
#   scripts/sanitizers/build-absl-tsan.sh DIR
set -euo pipefail
dest=${1:?usage: build-absl-tsan.sh DIR}
source_name=$(dpkg-query -W -f='${source:Package}' libabsl-dev)
version=$(dpkg-query -W -f='${source:Version}' libabsl-dev)
if [ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$source_name $version" ]; then
  echo "absl-tsan: $source_name $version already built in $dest"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt downloads as the _apt user
mkdir -p "$work/sources" "$work/lists/partial" "$work/src"
# deb-src twins of the machine's deb entries, both formats (deb822 .sources and one-line lists).
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$work/sources/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -e "$f" ] || continue
  sed -n -E 's/^deb (.*)/deb-src \1/p' "$f" >>"$work/sources/machine.list"
done
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/sources"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
  -o "APT::Sandbox::User=root" -q)
echo "absl-tsan: fetching the source of $source_name $version from the package mirror"
apt-get "${apt_opts[@]}" update >/dev/null
(cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only "$source_name=$version" >/dev/null)
dpkg-source -x "$work/src/${source_name}_${version#*:}.dsc" "$work/src/tree" >/dev/null

# Debian's configuration (debian/rules: C++17, shared) plus TSan; only the synchronization
# library and what it links.
cmake -S "$work/src/tree" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_STANDARD=17 -DABSL_PROPAGATE_CXX_STD=ON -DBUILD_SHARED_LIBS=ON \
  "-DCMAKE_CXX_FLAGS=-fsanitize=thread -O1 -gline-tables-only" \
  -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread >/dev/null
ninja -C "$work/build" -j "${BULKHEAD_BUILD_JOBS:-$(nproc)}" \
  absl/synchronization/libabsl_synchronization.so >/dev/null
rm -rf "$dest"
mkdir -p "$dest"
find "$work/build" -name 'libabsl_*.so.*' \( -type f -o -type l \) -exec cp -P {} "$dest/" \;
echo "$source_name $version" >"$dest/.version"
echo "absl-tsan: built $(find "$dest" -name 'libabsl_*.so.*' -type f | wc -l) libraries of $source_name $version with TSan in $dest"
