#!/usr/bin/env bash
# Installs the dependencies, builds ferry with its tests into build/, starts
# a throwaway PostgreSQL cluster (when the server is installed) and runs the
# test suite without the long (chaos/soak) tests:
#
#   bash deploy/test.sh                 # ctest -LE long --output-on-failure -j2
#   bash deploy/test.sh -L long         # other ctest arguments replace "-LE long"
#   bash deploy/test.sh --sanitize address   # ASan+UBSan build in build-asan, default suite
#   bash deploy/test.sh --sanitize thread    # TSan build in build-tsan, the threaded tests
#
# The ordinary run also builds the libFuzzer targets (deploy/build-fuzz.sh, clang)
# into build/fuzz; ctest runs each for 100,000 executions (tests fuzz_*).
# Sanitizer runs report through ASAN/UBSAN/TSAN_OPTIONS set below: any report
# fails the test that triggered it (halt_on_error / -fno-sanitize-recover).
#
# Environment: FERRY_BUILD_DIR (default build), FERRY_TEST_JOBS (default 2),
# FERRY_SKIP_BUILD=1 to reuse an existing build, FERRY_TEST_NO_PG=1 to run
# without PostgreSQL (tests that need it skip). Exit status: ctest's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SANITIZE=""
if [[ "${1:-}" == --sanitize ]]; then
  SANITIZE="${2:-}"
  shift 2 || true
elif [[ "${1:-}" == --sanitize=* ]]; then
  SANITIZE="${1#--sanitize=}"
  shift
fi
case "$SANITIZE" in
  "") BUILD_DIR="${FERRY_BUILD_DIR:-build}" ;;
  address) BUILD_DIR="${FERRY_BUILD_DIR:-build-asan}" ;;
  thread) BUILD_DIR="${FERRY_BUILD_DIR:-build-tsan}" ;;
  *)
    echo "test: error: --sanitize takes address or thread, not '$SANITIZE'" >&2
    exit 2
    ;;
esac
TEST_JOBS="${FERRY_TEST_JOBS:-2}"
CTEST_ARGS=("$@")
if [[ ${#CTEST_ARGS[@]} -eq 0 ]]; then
  CTEST_ARGS=(-LE long)
  # The threaded tests: the coordinator with in-process workers (embedded
  # mode), its HTTP endpoint and Prometheus scrape, the WAL checkpointer, the
  # coordinator's own tests and the fault tests (whose processes are
  # instrumented too).
  [[ "$SANITIZE" == thread ]] && CTEST_ARGS+=(-R "$(cat "$ROOT/tests/sanitizers/tsan-tests.txt" | grep -v '^#' | paste -sd'|')")
fi

if [[ "${FERRY_SKIP_BUILD:-0}" != 1 ]]; then
  FERRY_BUILD_DIR="$BUILD_DIR" FERRY_CMAKE_ARGS="${SANITIZE:+-DFERRY_SANITIZE=$SANITIZE}" \
    bash "$ROOT/deploy/build.sh"
  if [[ -z "$SANITIZE" ]]; then
    FERRY_SKIP_DEPS=1 bash "$ROOT/deploy/build-fuzz.sh" "$BUILD_DIR/fuzz"
  fi
fi

SUPP="$ROOT/tests/sanitizers"
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$SUPP/ubsan.supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$SUPP/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"

# Everything temporary lives under one directory, removed on exit: the
# tests' TMPDIR and the PostgreSQL cluster.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferry-test.XXXXXX")"
chmod 755 "$WORK"
PG_BIN=""
PG_DATA=""
PG_USER=""

as_pg_user() {
  if [[ "$(id -u)" -eq 0 ]]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u "$PG_USER" -- "$@"
    else
      su "$PG_USER" -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

stop_postgres() {
  [[ -n "$PG_DATA" && -f "$PG_DATA/postmaster.pid" ]] || return 0
  echo "test: stopping PostgreSQL"
  if ! as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1; then
    local pid
    pid="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]]; then
      echo "test: pg_ctl stop failed; sending SIGQUIT to postmaster $pid" >&2
      kill -QUIT "$pid" 2>/dev/null || true
      sleep 1
    fi
  fi
}

cleanup() {
  local rc=$?
  stop_postgres || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' && return 0
  fi
  local port
  for _ in $(seq 1 200); do
    port=$(( 20000 + RANDOM % 30000 ))
    if ! ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# Starts a throwaway cluster as a non-root user on 127.0.0.1:<free port> with
# trust authentication, creates database `ferry` and exports
# FERRY_TEST_PG_URI. Returns non-zero (and the tests that need PostgreSQL
# skip) when the server is not installed or does not start.
start_postgres() {
  local initdb
  initdb="$(ls -1d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -z "$initdb" ]]; then
    echo "test: PostgreSQL server not installed (no /usr/lib/postgresql/*/bin/initdb); PostgreSQL tests will skip"
    return 1
  fi
  PG_BIN="$(dirname "$initdb")"
  if [[ "$(id -u)" -eq 0 ]]; then
    PG_USER=ferrytest
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
      echo "test: creating system user $PG_USER (PostgreSQL refuses to run as root)"
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$PG_USER"
    fi
  else
    PG_USER="$(id -un)"
  fi
  local dir="$WORK/pg"
  mkdir -p "$dir"
  [[ "$(id -u)" -eq 0 ]] && chown "$PG_USER:" "$dir"
  chmod 700 "$dir"
  PG_DATA="$dir/data"
  if ! as_pg_user "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --auth=trust -E UTF8 \
      --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
    echo "test: warning: initdb failed; PostgreSQL tests will skip. Its log:" >&2
    cat "$dir/initdb.log" >&2
    PG_DATA=""
    return 1
  fi
  local port attempt
  for attempt in 1 2 3; do
    port="$(free_port)" || { echo "test: warning: no free TCP port found" >&2; return 1; }
    if as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c wal_level=logical -c max_replication_slots=40 -c max_wal_senders=40" \
        start >/dev/null 2>&1; then
      if as_pg_user "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U "$PG_USER" ferry; then
        export FERRY_TEST_PG_URI="postgresql://$PG_USER@127.0.0.1:$port/ferry"
        echo "test: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') running as $PG_USER: FERRY_TEST_PG_URI=$FERRY_TEST_PG_URI"
        return 0
      fi
      echo "test: warning: createdb failed" >&2
      stop_postgres
      return 1
    fi
    echo "test: PostgreSQL did not start on port $port (attempt $attempt)" >&2
  done
  echo "test: warning: PostgreSQL did not start; PostgreSQL tests will skip. Server log:" >&2
  tail -n 20 "$dir/server.log" >&2 || true
  return 1
}

unset FERRY_TEST_PG_URI
if [[ "${FERRY_TEST_NO_PG:-0}" != 1 ]]; then
  start_postgres || true
fi

mkdir -p "$WORK/tmp"
chmod 1777 "$WORK/tmp"
export TMPDIR="$WORK/tmp"

echo "test: ctest --test-dir $BUILD_DIR ${CTEST_ARGS[*]} --output-on-failure -j$TEST_JOBS"
set +e
ctest --test-dir "$BUILD_DIR" "${CTEST_ARGS[@]}" --output-on-failure -j"$TEST_JOBS"
rc=$?
set -e
echo "test: ctest exited with status $rc"
exit "$rc"
