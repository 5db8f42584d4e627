#!/usr/bin/env bash
# A long libFuzzer run of one of ferry's fuzz targets (tests/fuzz/):
#
#   bash deploy/fuzz.sh TARGET [SECONDS] [JOBS]   # TARGET: key_codec | status_command | worker_frame
#   bash deploy/fuzz.sh all 600                   # each target in turn, 600 s each
#
# Builds the fuzzers (deploy/build-fuzz.sh) unless FERRY_SKIP_BUILD=1, then
# fuzzes for SECONDS (default 600) with JOBS parallel processes (default 1),
# starting from the seed corpus tests/fuzz/TARGET/ and keeping what it
# learns in build/fuzz/corpus/TARGET/ (reused by the next run; the seed
# directory is never written). A crash leaves its reproducer in
# build/fuzz/artifacts/ and exits non-zero; replay it with
#   build/fuzz/bin/fuzz_TARGET build/fuzz/artifacts/crash-…
# and add the (minimized) input to tests/fuzz/TARGET/ once fixed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${1:?usage: deploy/fuzz.sh TARGET|all [SECONDS] [JOBS]}"
SECONDS_EACH="${2:-600}"
JOBS="${3:-1}"
DIR="${FERRY_FUZZ_DIR:-build/fuzz}"

if [[ "${FERRY_SKIP_BUILD:-0}" != 1 ]]; then
  bash "$ROOT/deploy/build-fuzz.sh" "$DIR"
fi
targets=("$TARGET")
[[ "$TARGET" == all ]] && targets=(key_codec status_command worker_frame)
for t in "${targets[@]}"; do
  bin="$DIR/bin/fuzz_$t"
  if [[ ! -x "$bin" ]]; then
    echo "fuzz: error: $bin not built (unknown target '$t'? targets: key_codec status_command worker_frame)" >&2
    exit 2
  fi
  mkdir -p "$DIR/corpus/$t" "$DIR/artifacts"
  echo "fuzz: $t for ${SECONDS_EACH}s with $JOBS job(s); corpus $DIR/corpus/$t"
  args=(-max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$DIR/artifacts/")
  if [[ "$JOBS" -gt 1 ]]; then
    args+=(-jobs="$JOBS" -workers="$JOBS")
  fi
  "$bin" "${args[@]}" "$DIR/corpus/$t" "tests/fuzz/$t"
done
