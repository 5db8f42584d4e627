#!/usr/bin/env bash
# Builds ferry's libFuzzer targets (tests/fuzz/*.cc) with clang into a small
# build tree of their own (default build/fuzz): the libraries they use,
# instrumented with -fsanitize=fuzzer-no-link,address,undefined, and the
# fuzz_* executables, nothing else.
#
#   bash deploy/build-fuzz.sh [DIR]
#
# Needs clang-14 and libclang-rt-14-dev (deploy/install-deps.sh installs
# them). Without clang it says so and exits 0: the ctest smoke tests fuzz_*
# then skip. Environment: FERRY_JOBS (default: nproc), FERRY_SKIP_DEPS=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DIR="${1:-build/fuzz}"
JOBS="${FERRY_JOBS:-$(nproc 2>/dev/null || echo 2)}"

if [[ "${FERRY_SKIP_DEPS:-0}" != 1 ]]; then
  bash "$ROOT/deploy/install-deps.sh"
fi
CC_BIN="$(command -v clang-14 || command -v clang || true)"
CXX_BIN="$(command -v clang++-14 || command -v clang++ || true)"
if [[ -z "$CXX_BIN" || -z "$CC_BIN" ]]; then
  echo "build-fuzz: clang not found; the fuzz targets are not built (their ctest smoke tests skip)"
  exit 0
fi

echo "build-fuzz: configuring $DIR ($CXX_BIN)"
cmake -S "$ROOT" -B "$DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF -DFERRY_FUZZ=ON \
  -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN" >/dev/null
echo "build-fuzz: building the fuzz targets with -j$JOBS"
cmake --build "$DIR" --target ferry_fuzzers -j"$JOBS"
echo "build-fuzz: ok: $(ls "$DIR"/bin/fuzz_* | tr '\n' ' ')"
