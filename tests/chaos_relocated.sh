#!/usr/bin/env bash
# ferry-chaos copied away from the build, as a user would copy a build: it
# must find ferry-coordinator and ferry-worker beside itself. The copies go to
# a temp dir; where the kernel allows a private mount namespace (root), the
# build's bin directory (compiled into ferry-chaos as FERRY_BIN_DIR) is hidden
# under an empty tmpfs for the run, so only the copies can be found. Passes if
# the run's first line names the copy's directory and the run ends with no
# loss, no extra rows, no mismatch and no failure.
# Usage: chaos_relocated.sh BIN_DIR
set -euo pipefail
BIN="$(cd "$1" && pwd)"
COPY="$(mktemp -d "${TMPDIR:-/tmp}/ferry-relocated.XXXXXX")"
trap 'rm -rf "$COPY"' EXIT
cp "$BIN/ferry-chaos" "$BIN/ferry-coordinator" "$BIN/ferry-worker" "$COPY/"
args=(--runs 1 --rows 3000 --workers 2 --kill-interval-ms 400 --max-seconds 90)
if unshare -m true 2>/dev/null; then
  echo "chaos_relocated: $BIN hidden under an empty tmpfs for the run"
  out="$(unshare -m sh -c 'mount -t tmpfs tmpfs "$1" && shift && exec "$@"' sh "$BIN" \
    "$COPY/ferry-chaos" "${args[@]}" 2>&1)" || { echo "$out"; exit 1; }
else
  echo "chaos_relocated: cannot hide $BIN (no private mount namespace); checking the named directory only"
  out="$("$COPY/ferry-chaos" "${args[@]}" 2>&1)" || { echo "$out"; exit 1; }
fi
echo "$out"
grep -q "executables from $COPY\$" <<<"$out" || { echo "FAIL: ferry-chaos did not use the executables beside it"; exit 1; }
grep -qx "chaos: 1 runs, 0 lost, 0 duplicated-or-extra, 0 mismatched, 0 failed" <<<"$out" ||
  { echo "FAIL: the chaos run did not end clean"; exit 1; }
echo "chaos_relocated: OK"
