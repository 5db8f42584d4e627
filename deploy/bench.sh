#!/usr/bin/env bash
# The benchmark (issue #6): builds ferry in Release into build-release/ and
# runs build-release/bin/ferry-bench, which measures ferry and its baselines
# side by side in ONE run and prints a table of medians, ratios against the
# baseline of the same run, the bars (met / not met) and the machine.
#
#   bash deploy/bench.sh --quick            # quick mode (memory case 100k and 1M rows)
#   bash deploy/bench.sh                    # full mode (memory case 1M and 10M rows: long)
#   bash deploy/bench.sh --cases 1,3,5 --repeat 5
#   FERRY_BENCH_PG_URI=postgresql://user@127.0.0.1:5432/postgres bash deploy/bench.sh
#
# Every other argument goes to ferry-bench (see `ferry-bench --help`).
# Environment: FERRY_BENCH_BUILD_DIR (default build-release), FERRY_SKIP_BUILD=1,
# FERRY_JOBS (default 2), FERRY_BENCH_PG_URI (case 2: SQLite -> PostgreSQL vs
# pgloader; skipped when unset). Results also go to /tmp/ferry-bench/results.txt
# (or --dir DIR). Run it on an otherwise idle machine: the load average is
# printed with the results.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${FERRY_BENCH_BUILD_DIR:-build-release}"

for a in "$@"; do
  if [[ "$a" == -h || "$a" == --help ]]; then
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
  fi
done

if [[ "${FERRY_SKIP_BUILD:-0}" != 1 ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j"${FERRY_JOBS:-2}" --target ferry-bench ferry-coordinator ferry-worker
fi
for exe in sqlite3; do
  command -v "$exe" >/dev/null || { echo "bench: error: $exe not found (apt-get install sqlite3)" >&2; exit 1; }
done
if [[ -n "${FERRY_BENCH_PG_URI:-}" ]] && ! command -v pgloader >/dev/null; then
  echo "bench: pgloader is missing; installing it (apt-get install pgloader) for case 2" >&2
  if [[ "$(id -u)" == 0 ]]; then apt-get install -y pgloader >&2 || true
  else sudo apt-get install -y pgloader >&2 || true; fi
fi
exec "$BUILD_DIR/bin/ferry-bench" --bin-dir "$BUILD_DIR/bin" "$@"
