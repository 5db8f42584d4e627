#!/usr/bin/env bash
# Installs the dependencies (deploy/install-deps.sh), then configures and
# builds ferry into build/ (RelWithDebInfo, tests included):
#   build/bin/ferry-coordinator, build/bin/ferry-worker, build/bin/ferryctl
#
#   bash deploy/build.sh              # everything, tests included
#   bash deploy/build.sh TARGET...    # only these targets (and what they need)
#
# Environment: FERRY_BUILD_DIR (default: build), FERRY_BUILD_TYPE (default:
# RelWithDebInfo), FERRY_JOBS (default: nproc), FERRY_BUILD_TESTING (ON or
# OFF, default ON: OFF configures without the tests and without GoogleTest,
# as deploy/demo.sh does; deploy/test.sh turns it back on in the same build
# directory), FERRY_SKIP_DEPS=1 to skip the package check, FERRY_CMAKE_ARGS
# (extra configure arguments, split on spaces; deploy/test.sh --sanitize
# passes -DFERRY_SANITIZE=... through it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD_DIR="${FERRY_BUILD_DIR:-build}"
BUILD_TYPE="${FERRY_BUILD_TYPE:-RelWithDebInfo}"
JOBS="${FERRY_JOBS:-$(nproc 2>/dev/null || echo 2)}"
TESTING="${FERRY_BUILD_TESTING:-ON}"
TARGETS=("$@")
if [[ "$TESTING" != ON && "$TESTING" != OFF ]]; then
  echo "build: error: FERRY_BUILD_TESTING must be ON or OFF (got '$TESTING')" >&2
  exit 2
fi

if [[ "${FERRY_SKIP_DEPS:-0}" != 1 ]]; then
  bash "$ROOT/deploy/install-deps.sh"
fi

echo "build: configuring $BUILD_DIR ($BUILD_TYPE, tests $TESTING)"
# shellcheck disable=SC2086  # FERRY_CMAKE_ARGS is a list of words
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DBUILD_TESTING="$TESTING" ${FERRY_CMAKE_ARGS:-}
if [[ ${#TARGETS[@]} -gt 0 ]]; then
  echo "build: building ${TARGETS[*]} with -j$JOBS"
  cmake --build "$BUILD_DIR" -j"$JOBS" --target "${TARGETS[@]}"
else
  echo "build: building with -j$JOBS"
  cmake --build "$BUILD_DIR" -j"$JOBS"
fi
for exe in ferry-coordinator ferry-worker ferryctl; do
  if [[ ${#TARGETS[@]} -gt 0 && " ${TARGETS[*]} " != *" $exe "* ]]; then
    continue
  fi
  if [[ ! -x "$BUILD_DIR/bin/$exe" ]]; then
    echo "build: error: $BUILD_DIR/bin/$exe was not built" >&2
    exit 1
  fi
done
if [[ ${#TARGETS[@]} -gt 0 ]]; then
  echo "build: ok: ${TARGETS[*]} in $BUILD_DIR/bin"
else
  echo "build: ok: $BUILD_DIR/bin/{ferry-coordinator,ferry-worker,ferryctl}"
fi
