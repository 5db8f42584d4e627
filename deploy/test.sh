#!/usr/bin/env bash
# Installs the dependencies, builds ferry with its tests into build/, starts
# a throwaway PostgreSQL cluster (when the server is installed) and runs the
# test suite without the long (chaos/soak) tests:
#
#   bash deploy/test.sh                 # ctest -LE long --output-on-failure -j2
#   bash deploy/test.sh -L long         # other ctest arguments replace "-LE long"
#
# Environment: FERRY_BUILD_DIR (default build), FERRY_TEST_JOBS (default 2),
# FERRY_SKIP_BUILD=1 to reuse an existing build, FERRY_TEST_NO_PG=1 to run
# without PostgreSQL (tests that need it skip). Exit status: ctest's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD_DIR="${FERRY_BUILD_DIR:-build}"
TEST_JOBS="${FERRY_TEST_JOBS:-2}"
CTEST_ARGS=("$@")
[[ ${#CTEST_ARGS[@]} -gt 0 ]] || CTEST_ARGS=(-LE long)

if [[ "${FERRY_SKIP_BUILD:-0}" != 1 ]]; then
  bash "$ROOT/deploy/build.sh"
fi

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
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
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
