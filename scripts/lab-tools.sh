#!/usr/bin/env bash
# Fetches the real tools the lab tests drive (detection tools: tests/lab/tools.py; Prometheus
# and promtool for the controller's metrics and alert rules; aiosmtpd, with its python3-public,
# the SMTP server the notifications' email is sent to; the PostgreSQL 15 server that the
# controller's PostgreSQL tests start in a temporary directory: tests/unit/controller/
# temp_postgres.h), from Debian 12's packages, WITHOUT installing them: `apt-get download` +
# `dpkg-deb -x` into a cache dir, so no maintainer script runs (they would start services,
# register with CrowdSec's central API and, for the bouncers, rewrite the machine's firewall;
# PostgreSQL's would create and start the machine's own cluster). The tests start each daemon
# themselves, inside a lab node or a private namespace, with a private configuration.
#
#   ${BULKHEAD_LAB_TOOLS:-/var/cache/bulkhead/lab-tools}/<package>/   the extracted package
#   .../<package>/.bulkhead-stamp                                     "<package> <version>"
#
# Idempotent and quick when cached (no apt call at all when every stamp matches). One line per
# tool on stdout. Exit 1 with a clear message if the mirror cannot be reached or carries another
# upstream version than the one the tests were written against. A wanted version is exact, or a
# glob (`15.*`) for a package whose security updates move the minor version (PostgreSQL).
set -euo pipefail

CACHE=${BULKHEAD_LAB_TOOLS:-/var/cache/bulkhead/lab-tools}
# package -> upstream version (Debian 12 "bookworm")
declare -A WANT=(
  [fail2ban]=1.0.2
  [crowdsec]=1.4.6
  [prometheus-alertmanager]=0.25.0
  [prometheus]=2.42.0+ds
  [python3-aiosmtpd]=1.4.3
  [python3-public]=2.3
  # binaries in usr/lib/postgresql/15/bin, relocatable (they find usr/share/postgresql/15 of the
  # same tree); any 15.x: Debian's security updates follow upstream's minor releases
  [postgresql-15]='15.*'
)
ORDER=(fail2ban crowdsec prometheus-alertmanager prometheus python3-aiosmtpd python3-public
  postgresql-15)

die() { echo "lab-tools: $*" >&2; exit 1; }

# upstream part of a Debian version: strip the epoch and the Debian revision
upstream() { local v=${1#*:}; echo "${v%-*}"; }

stamp_of() { cat "$CACHE/$1/.bulkhead-stamp" 2>/dev/null || true; }

# wanted PACKAGE DEBIAN_VERSION: whether the version's upstream part is the one wanted, exactly,
# or matching the glob when the wanted version has a `*`
wanted() {
  local u w=${WANT[$1]}
  u=$(upstream "$2")
  if [[ $w == *'*'* ]]; then
    # shellcheck disable=SC2053  # unquoted on purpose: a glob
    [[ $u == $w ]]
  else
    [ "$u" = "$w" ]
  fi
}

todo=()
for p in "${ORDER[@]}"; do
  s=$(stamp_of "$p")
  if [ -n "$s" ] && wanted "$p" "${s#* }"; then
    echo "lab-tools: $p ${s#* } (cached in $CACHE/$p)"
  else
    todo+=("$p")
  fi
done
[ ${#todo[@]} -eq 0 ] && exit 0

[ "$(id -u)" -eq 0 ] || die "run as root to fetch ${todo[*]} into $CACHE (or set BULKHEAD_LAB_TOOLS)"
for t in apt-get apt-cache dpkg-deb; do
  command -v "$t" >/dev/null || die "needs $t (Debian)"
done

# candidate version of a package, from the local package lists
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^  Candidate: //p'; }

need_update=0
for p in "${todo[@]}"; do
  c=$(candidate "$p")
  if [ -z "$c" ] || [ "$c" = "(none)" ] || ! wanted "$p" "$c"; then need_update=1; fi
done
if [ "$need_update" -eq 1 ]; then
  echo "lab-tools: apt-get update (package lists missing or stale)" >&2
  if ! out=$(apt-get update -q 2>&1) ||
      grep -qE '^(W|E): (Failed to fetch|Some index files failed)' <<<"$out"; then
    echo "$out" | grep -E '^(W|E):' >&2 || true
    die "cannot reach the Debian mirror (apt-get update failed); the lab's tool tests need ${todo[*]}"
  fi
fi

mkdir -p "$CACHE"
dl=$(mktemp -d "$CACHE/.download.XXXXXX")
trap 'rm -rf "$dl"' EXIT
for p in "${todo[@]}"; do
  c=$(candidate "$p")
  if [ -z "$c" ] || [ "$c" = "(none)" ]; then
    die "$p: no candidate version in the package lists (is bookworm main in the apt sources?)"
  fi
  wanted "$p" "$c" ||
    die "$p: the mirror has $c, the tests are written for ${WANT[$p]} (Debian 12)"
  # apt drops privileges to _apt for downloads; the cache dir may not be writable for it
  if ! (cd "$dl" && apt-get -q -o APT::Sandbox::User=root download "$p=$c" >"$dl/$p.log" 2>&1); then
    cat "$dl/$p.log" >&2
    die "$p $c: download failed: cannot reach the Debian mirror?"
  fi
  debs=("$dl/${p}"_*.deb)
  deb=${debs[0]}
  [ -f "$deb" ] || die "$p: apt-get download left no .deb"
  v=$(dpkg-deb -f "$deb" Version)
  [ "$v" = "$c" ] || die "$p: downloaded $v, expected $c"
  # extract next to the final place, then swap, so an interrupted run leaves no half tree
  rm -rf "$CACHE/.new-$p"
  mkdir -p "$CACHE/.new-$p"
  dpkg-deb -x "$deb" "$CACHE/.new-$p"
  echo "$p $v" >"$CACHE/.new-$p/.bulkhead-stamp"
  rm -rf "${CACHE:?}/$p"
  mv "$CACHE/.new-$p" "$CACHE/$p"
  rm -f "$deb"
  echo "lab-tools: $p $v (fetched into $CACHE/$p)"
done
