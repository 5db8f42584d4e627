#!/usr/bin/env bash
# Installs every Debian 12 package ferry needs to build, test and run.
# Idempotent: checks each package with dpkg-query and installs only the
# missing ones (running `apt-get update` first, and only if something is
# missing). Runs apt as root, through sudo when not root.
#
#   bash deploy/install-deps.sh                     # build, test and run
#   bash deploy/install-deps.sh --no-test-packages  # build and run only (deploy/demo.sh)
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  sqlite3 libsqlite3-dev
  libzmq3-dev cppzmq-dev
  capnproto libcapnp-dev
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev
  libcli11-dev nlohmann-json3-dev libxxhash-dev libcpp-httplib-dev
  zlib1g-dev  # the dashboard gzips its answers itself (coordinator/dashboard.cc)
  chromium chromium-driver  # tests: the dashboard in a headless browser (tests/webdriver.h)
  libpq-dev postgresql postgresql-client
  postgresql-15-wal2json  # tests: online mode's logical decoding (a legacy server needs it)
  prometheus  # promtool: tests check the metrics exposition format
  clang-format  # the clang_format test checks every source against .clang-format
  clang  # the thread_safety_analysis test compiles annotated sources with -Wthread-safety
  util-linux  # prlimit: fault tests cap a worker's file size; mount: full-disk tests
  libtomlplusplus-dev  # migration spec files (--spec)
  liblua5.4-dev  # the spec's Lua row functions
  clang-14 libclang-rt-14-dev  # libFuzzer targets (deploy/build-fuzz.sh)
  iproute2 nftables  # network-namespace fault tests (ip netns, veth, tc; nft loss rules)
  spin  # tests/model: the lease protocol, model-checked
  systemd yamllint python3-yaml  # tests/deploy: systemd-analyze verify, the k8s manifests
)

# Needed only by the test suite (BUILD_TESTING=ON, deploy/test.sh).
TEST_ONLY=(libgtest-dev libgmock-dev postgresql postgresql-15-wal2json prometheus clang-format util-linux)

case "${1:-}" in
  "") ;;
  --no-test-packages)
    kept=()
    for p in "${PACKAGES[@]}"; do
      [[ " ${TEST_ONLY[*]} " == *" $p "* ]] || kept+=("$p")
    done
    PACKAGES=("${kept[@]}")
    ;;
  *) echo "install-deps: error: unknown argument '$1' (use --no-test-packages or nothing)" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages are installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: error: missing packages (${missing[*]}) and no apt-get: ferry targets Debian 12; install them by hand" >&2
  exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: error: missing packages (${missing[*]}); run this script as root or install sudo" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done"
