#!/usr/bin/env bash
# check_proto.sh lint|breaking: buf over proto/ (proto/buf.yaml says which rules).
#   lint      buf lint
#   breaking  buf breaking against proto/ of the previous commit (HEAD~1), taken with git archive
#             so it works in worktrees; BULKHEAD_PROTO_AGAINST=REF compares with another commit.
#   breaking-release  the same against the previous release (tests/compat/previous-release):
#             what its agents and controllers send must still parse here, and the reverse.
# buf comes from scripts/install-deps.sh (/opt/bulkhead-tools); its absence is a failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
buf="${BULKHEAD_BUF:-/opt/bulkhead-tools/node_modules/.bin/buf}"
[ -x "$buf" ] || buf="$(command -v buf || true)"
if [ -z "$buf" ]; then
  echo "check_proto: buf not found: run scripts/install-deps.sh" >&2
  exit 1
fi
cd "$root/proto"
case "${1:-}" in
  lint)
    "$buf" lint
    echo "check_proto: buf lint: proto/ is clean"
    ;;
  breaking|breaking-release)
    if [ "$1" = breaking-release ]; then
      ref=$(grep -v '^#' "$root/tests/compat/previous-release" | grep -m1 . | cut -d' ' -f2)
    else
      ref="${BULKHEAD_PROTO_AGAINST:-HEAD~1}"
    fi
    if ! git -C "$root" rev-parse --verify -q "$ref^{commit}" >/dev/null; then
      echo "check_proto: no commit $ref to compare with (a shallow clone?)" >&2
      exit 1
    fi
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    git -C "$root" archive "$ref" proto | tar -x -C "$tmp"
    "$buf" breaking --against "$tmp/proto"
    echo "check_proto: buf breaking: proto/ is wire-compatible with $ref"
    ;;
  *)
    echo "usage: check_proto.sh lint|breaking|breaking-release" >&2
    exit 2
    ;;
esac
