#!/usr/bin/env bash
# Builds the Debian package of ferry and prints its path:
#   bash deploy/package.sh        -> build-deb/ferry_0.1.0_amd64.deb
# A Release build without tests in FERRY_BUILD_DIR (default build-deb; kept,
# so a second run only rebuilds what changed), then CPack DEB (see
# deploy/package.cmake for the contents). Installs the build dependencies first
# (deploy/install-deps.sh) unless FERRY_SKIP_DEPS=1. FERRY_JOBS: parallel jobs.
# deploy/Containerfile and deploy/package-test.sh run exactly this.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${FERRY_BUILD_DIR:-build-deb}"
JOBS="${FERRY_JOBS:-$(nproc 2>/dev/null || echo 2)}"

if [[ "${FERRY_SKIP_DEPS:-0}" != 1 ]]; then
  bash "$ROOT/deploy/install-deps.sh" >&2
fi
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >&2
cmake --build "$BUILD_DIR" -j"$JOBS" --target ferry-coordinator ferry-worker ferryctl >&2
rm -f "$BUILD_DIR"/ferry_*.deb
(cd "$BUILD_DIR" && cpack -G DEB >&2)
deb="$(ls "$BUILD_DIR"/ferry_*.deb)"
echo "package: built $deb ($(du -h "$deb" | cut -f1))" >&2
echo "$ROOT/$deb"
