#!/usr/bin/env bash
# ctest smoke run of one libFuzzer target: RUNS executions starting from the
# seed corpus SEEDS (copied to a scratch corpus, so the tree is never
# written). Prints libFuzzer's last status line (cov:, ft:, exec/s) and exits
# with its status; 77 (ctest: skipped) when the fuzzer was not built.
#   bash tests/fuzz/smoke.sh FUZZER SEEDS RUNS [LIBFUZZER-FLAG...]
set -euo pipefail
BIN="$1" SEEDS="$2" RUNS="$3"
shift 3
if [[ ! -x "$BIN" ]]; then
  echo "fuzz: skipped: $BIN not built (bash deploy/build-fuzz.sh builds it; needs clang-14)"
  exit 77
fi
CORPUS="$(mktemp -d "${TMPDIR:-/tmp}/ferry-fuzz.XXXXXX")"
trap 'rm -rf "$CORPUS"' EXIT
cp "$SEEDS"/* "$CORPUS"/
set +e
"$BIN" -runs="$RUNS" -error_exitcode=1 -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$CORPUS/" "$@" "$CORPUS" >"$CORPUS/log" 2>&1
rc=$?
set -e
grep -E "^#[0-9]+.*(DONE|cov:)" "$CORPUS/log" | tail -n 2 || true
grep -E "stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$CORPUS/log" || true
if [[ $rc -ne 0 ]]; then
  echo "fuzz: $BIN failed (status $rc); its output:"
  tail -n 80 "$CORPUS/log"
  for f in "$CORPUS"/crash-* "$CORPUS"/leak-* "$CORPUS"/timeout-* "$CORPUS"/oom-*; do
    [[ -e "$f" ]] && echo "fuzz: reproducer $(basename "$f"): $(od -An -tx1 "$f" | tr -d '\n' | head -c 600)"
  done
fi
exit $rc
