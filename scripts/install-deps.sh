#!/usr/bin/env bash
# Installs everything bulkhead needs to build, test and run its lab, from Debian 12 packages.
# Idempotent; skips apt entirely when every package is already installed.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake ninja-build pkg-config git
  # lld: links the test programs several times faster than GNU ld (cmake/Linker.cmake)
  lld
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libnftables-dev libnl-3-dev libnl-route-3-dev libnl-nf-3-dev
  libspdlog-dev libfmt-dev libboost-program-options-dev libsqlite3-dev libssl-dev
  libyaml-cpp-dev nlohmann-json3-dev libgtest-dev libgmock-dev libarchive-dev
  # HTTP: the CrowdSec LAPI client and the HTTPS webhook listener; libcurl: the notifications
  # (HTTPS webhooks, SMTP)
  libcpp-httplib-dev libcurl4-openssl-dev
  # the controller's Prometheus metrics (prometheus-cpp core)
  prometheus-cpp-dev
  # tcmalloc (gperftools): the controller's allocator (controller/CMakeLists.txt)
  libgoogle-perftools-dev
  # PostgreSQL client libraries: the controller's PostgreSQL store (libpqxx) and the tests'
  # throw-away server helper (libpq: tests/unit/controller/temp_postgres.h)
  libpqxx-dev libpq-dev
  # what the PostgreSQL 15 server binaries that scripts/lab-tools.sh extracts (never installs:
  # postgresql-15's scripts would create and start the machine's own cluster) link (readelf
  # NEEDED of postgres and initdb), and tzdata, its time zones (built with
  # --with-system-tzdata). Not libllvm: the tests run it with jit=off
  libpq5 libicu72 libxml2 libldap-2.5-0 libgssapi-krb5-2 liblz4-1 libzstd1 libpam0g libssl3
  libsystemd0 zlib1g tzdata
  # sanitizer, fuzz and static-check stages of scripts/test.sh: clang with its sanitizer and
  # libFuzzer runtimes, llvm-symbolizer for readable reports, clang-tidy
  clang libclang-rt-14-dev llvm clang-tidy
  # the TSan stage rebuilds Debian's abseil source with TSan (dpkg-source unpacks it)
  dpkg-dev
  # the lab and the tests: namespaces, firewall, real traffic, real sessions
  nftables iproute2 util-linux procps python3 openssh-server openssh-client conntrack
  # the lab checks every `bulkhead --json` document against cli/schemas/
  python3-jsonschema
  # the Debian packages (scripts/package.sh) and their tests on a clean root
  debhelper lintian mmdebstrap
  # incident reports: the controller prints PDF with headless Chromium; the lab test reads the
  # PDF's text (poppler-utils' pdftotext)
  chromium poppler-utils
  # manual pages from the programs' --help (help2man), checked by man-db and groff in the tests
  help2man man-db groff-base
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (apt-get install)" >&2
  exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
# buf (the protobuf linter and breaking-change checker) comes from the npm registry, where it is
# packaged with its binary; npm itself from Debian unless the machine has one already.
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The lab starts its own sshd per host; the machine's own sshd unit is not needed for that.
fi

BUF_VERSION=1.75.0
BUF_PREFIX=/opt/bulkhead-tools
if [ "$("$BUF_PREFIX/node_modules/.bin/buf" --version 2>/dev/null)" != "$BUF_VERSION" ]; then
  echo "install-deps: installing buf $BUF_VERSION into $BUF_PREFIX (npm)"
  npm install --no-audit --no-fund --prefix "$BUF_PREFIX" "@bufbuild/buf@$BUF_VERSION"
fi

# The real detection tools the lab tests drive (fail2ban, CrowdSec, Alertmanager): fetched and
# extracted into a cache dir, never installed (their maintainer scripts start services).
"$(dirname "$0")/lab-tools.sh"
