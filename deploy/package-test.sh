#!/usr/bin/env bash
# Tests ferry's Debian package the way an operator uses it, on this machine:
#   1. builds it (bash deploy/package.sh),
#   2. installs it with apt-get (deploy/install-package.sh; user ferry = uid 10001),
#   3. checks what it installed (files, Depends, the user, the state directory,
#      systemd-analyze verify of the installed units),
#   4. runs two SQLite -> SQLite migrations with the INSTALLED executables, as
#      the user ferry: one embedded (ferry-coordinator --local-workers 2), one
#      fleet (ferry-coordinator --exit-when-done + 2 ferry-worker processes),
#      each checked with the sqlite3 CLI (row counts, EXCEPT both ways,
#      __ferry_meta version 2) and with ferryctl wait / verify,
#   5. removes the package (apt-get purge) and checks its files are gone; the
#      user and directories it created are removed too.
# It also checks that deploy/Containerfile runs the same two commands.
#
# It changes the machine (root; /usr/bin, /lib/systemd/system, a user), so it
# runs only when asked: FERRY_PACKAGE_TEST=1 bash deploy/package-test.sh
# (ctest: FERRY_PACKAGE_TEST=1 ctest -L package). Refuses to run where a ferry
# package is already installed. FERRY_SKIP_DEPS=1 skips deploy/install-deps.sh.
# Exit: 0 ok, 1 a check failed, 77 skipped (not asked for, or not root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ "${FERRY_PACKAGE_TEST:-0}" != 1 ]]; then
  echo "package test skipped: it installs and removes a package; run with FERRY_PACKAGE_TEST=1 (as root)"
  exit 77
fi
if [[ "$(id -u)" -ne 0 ]]; then
  echo "package test skipped: needs root (apt-get install, useradd)"
  exit 77
fi
if dpkg-query -W -f='${Status}' ferry 2>/dev/null | grep -q 'install ok'; then
  echo "package test: error: a ferry package is already installed here; remove it first (apt-get purge ferry)" >&2
  exit 1
fi

T0=$(date +%s)
step() { echo "package test: [$(($(date +%s) - T0)) s] $*"; }
fail() {
  echo "package test: FAIL: $*" >&2
  exit 1
}

# What the machine had before, to leave it as it was.
had_user=0
getent passwd ferry >/dev/null && had_user=1
had_group=0
getent group ferry >/dev/null && had_group=1
had_state=0
[[ -e /var/lib/ferry ]] && had_state=1
had_etc=0
[[ -e /etc/ferry ]] && had_etc=1
WORK="$(mktemp -d /tmp/ferry-package-test.XXXXXX)"
chmod 0755 "$WORK"
installed=0
cleanup() {
  local rc=$?
  set +e
  if [[ $installed -eq 1 ]]; then
    step "removing the package"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y ferry >"$WORK/purge.log" 2>&1 ||
      { cat "$WORK/purge.log"; rc=1; }
    for f in /usr/bin/ferry-coordinator /usr/bin/ferry-worker /usr/bin/ferryctl \
      /lib/systemd/system/ferry-coordinator.service /lib/systemd/system/ferry-worker@.service \
      /usr/share/doc/ferry/README.md; do
      if [[ -e "$f" ]]; then
        echo "package test: FAIL: $f is still there after apt-get purge" >&2
        rc=1
      fi
    done
  fi
  [[ $had_user -eq 1 ]] || userdel ferry 2>/dev/null
  [[ $had_group -eq 1 ]] || groupdel ferry 2>/dev/null
  [[ $had_state -eq 1 ]] || rm -rf /var/lib/ferry
  [[ $had_etc -eq 1 ]] || rm -rf /etc/ferry
  rm -rf "$WORK"
  if [[ $rc -eq 0 ]]; then step "OK"; else echo "package test: FAILED" >&2; fi
  exit $rc
}
trap cleanup EXIT

# 0. deploy/Containerfile runs the commands this test runs.
BUILD_CMD='bash deploy/package.sh'
INSTALL_CMD='FERRY_UID=10001 bash /tmp/install-package.sh /tmp/ferry_*.deb'
runs="$(sed -n 's/^RUN //p' deploy/Containerfile)"
grep -qxF "$BUILD_CMD" <<<"$runs" || fail "deploy/Containerfile does not build with '$BUILD_CMD'"
grep -qF "$INSTALL_CMD" <<<"$runs" || fail "deploy/Containerfile does not install with '$INSTALL_CMD'"

# 1. build
step "building the package: $BUILD_CMD"
deb="$(bash deploy/package.sh)" || fail "deploy/package.sh failed"
[[ -f "$deb" ]] || fail "deploy/package.sh printed $deb, which does not exist"
depends="$(dpkg-deb -f "$deb" Depends)"
for dep in adduser libzmq5 libsqlite3-0 libpq5 libcapnp; do
  grep -q "$dep" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
step "built $(basename "$deb"); Depends: $depends"

# 2. install (uid 10001 as in the image, when it is free here)
uid_env=()
if ! getent passwd 10001 >/dev/null && ! getent group 10001 >/dev/null; then uid_env=(FERRY_UID=10001); fi
cp deploy/install-package.sh "$WORK/install-package.sh"
cp "$deb" "$WORK/"
step "installing: ${uid_env[*]} bash install-package.sh $(basename "$deb")"
installed=1
env "${uid_env[@]}" bash "$WORK/install-package.sh" "$WORK/$(basename "$deb")" >"$WORK/install.log" 2>&1 ||
  { cat "$WORK/install.log"; fail "apt-get install failed"; }

# 3. what it installed
for f in /usr/bin/ferry-coordinator /usr/bin/ferry-worker /usr/bin/ferryctl \
  /lib/systemd/system/ferry-coordinator.service /lib/systemd/system/ferry-worker@.service \
  /usr/share/doc/ferry/README.md /usr/share/doc/ferry/ferry.env.example; do
  [[ -e "$f" ]] || fail "$f is not installed"
done
for exe in ferry-coordinator ferry-worker ferryctl; do
  v="$(/usr/bin/$exe --version)"
  grep -q '0\.1\.0' <<<"$v" || fail "/usr/bin/$exe --version says '$v'"
done
getent passwd ferry >/dev/null || fail "the package did not create the user ferry"
if [[ ${#uid_env[@]} -gt 0 && "$(id -u ferry)" != 10001 ]]; then fail "user ferry is not uid 10001"; fi
[[ "$(stat -c %U /var/lib/ferry)" == ferry ]] || fail "/var/lib/ferry is not owned by ferry"
if command -v systemd-analyze >/dev/null; then
  out="$(systemd-analyze verify ferry-coordinator.service ferry-worker@1.service 2>&1)" ||
    fail "systemd-analyze verify of the installed units: $out"
  [[ -z "$out" ]] || fail "systemd-analyze verify of the installed units: $out"
  step "installed units verified (systemd-analyze verify)"
fi

# 4. migrations with the installed executables, as the user ferry
chown ferry: "$WORK"
as_ferry() { runuser -u ferry -- timeout 300 "$@"; }
make_legacy() {
  as_ferry sqlite3 "$1" <<'SQL'
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, score REAL, avatar BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
INSERT INTO users SELECT i, 'u' || i || '@example.com', i * 0.5, randomblob(i % 40) FROM n;
CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO kv SELECT randomblob(16), randomblob(100) FROM n;
CREATE TABLE notes (body TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO notes(rowid, body) SELECT i * 7 - 1000, 'note ' || i FROM n;
SQL
}
# compare NEW with LEGACY with plain SQL: counts, EXCEPT both ways, the version
check_stores() {
  local legacy="$1" new="$2"
  local out
  out="$(as_ferry sqlite3 "$new" <<SQL
ATTACH '$legacy' AS l;
SELECT 'users', (SELECT count(*) FROM l.users), (SELECT count(*) FROM main.users),
  (SELECT count(*) FROM (SELECT * FROM l.users EXCEPT SELECT * FROM main.users)),
  (SELECT count(*) FROM (SELECT * FROM main.users EXCEPT SELECT * FROM l.users));
SELECT 'kv', (SELECT count(*) FROM l.kv), (SELECT count(*) FROM main.kv),
  (SELECT count(*) FROM (SELECT * FROM l.kv EXCEPT SELECT * FROM main.kv)),
  (SELECT count(*) FROM (SELECT * FROM main.kv EXCEPT SELECT * FROM l.kv));
SELECT 'notes', (SELECT count(*) FROM l.notes), (SELECT count(*) FROM main.notes),
  (SELECT count(*) FROM (SELECT rowid, body FROM l.notes EXCEPT SELECT rowid, body FROM main.notes)),
  (SELECT count(*) FROM (SELECT rowid, body FROM main.notes EXCEPT SELECT rowid, body FROM l.notes));
SELECT 'version', (SELECT value FROM main.__ferry_meta WHERE key = 'version');
SQL
)"
  local expect
  expect="$(printf 'users|3000|3000|0|0\nkv|1000|1000|0|0\nnotes|500|500|0|0\nversion|2')"
  [[ "$out" == "$expect" ]] || fail "$new differs from $legacy:"$'\n'"$out"
  as_ferry /usr/bin/ferryctl wait --target "sqlite:$new" --to-version 2 --timeout 5 >/dev/null ||
    fail "ferryctl wait --target sqlite:$new did not see version 2"
}

step "migration 1: /usr/bin/ferry-coordinator --local-workers 2"
make_legacy "$WORK/legacy.db"
as_ferry /usr/bin/ferry-coordinator --source "sqlite:$WORK/legacy.db" --target "sqlite:$WORK/new.db" \
  --state "$WORK/state.db" --local-workers 2 --range-rows 700 --listen tcp://127.0.0.1:0 \
  --status-endpoint tcp://127.0.0.1:0 >"$WORK/m1.out" 2>"$WORK/m1.log" ||
  { tail -5 "$WORK/m1.log"; fail "the embedded migration exited $?"; }
grep -q '^ferry: complete: 4500 rows' "$WORK/m1.out" || fail "unexpected summary: $(cat "$WORK/m1.out")"
check_stores "$WORK/legacy.db" "$WORK/new.db"
as_ferry /usr/bin/ferryctl verify --state "$WORK/state.db" >"$WORK/verify.out" 2>&1 ||
  { cat "$WORK/verify.out"; fail "ferryctl verify found differences"; }
step "migration 1: 4500 rows, stores equal (sqlite3 and ferryctl verify)"

step "migration 2: ferry-coordinator --exit-when-done + 2 /usr/bin/ferry-worker processes"
as_ferry /usr/bin/ferry-coordinator --source "sqlite:$WORK/legacy.db" --target "sqlite:$WORK/new2.db" \
  --state "$WORK/state2.db" --range-rows 700 --exit-when-done --listen tcp://127.0.0.1:0 \
  --status-endpoint tcp://127.0.0.1:0 --endpoints-file "$WORK/endpoints.json" \
  >"$WORK/m2.out" 2>"$WORK/m2.log" &
coord=$!
for _ in $(seq 1 100); do
  [[ -s "$WORK/endpoints.json" ]] && break
  kill -0 "$coord" 2>/dev/null || break
  sleep 0.1
done
[[ -s "$WORK/endpoints.json" ]] || { tail -5 "$WORK/m2.log"; fail "the coordinator wrote no endpoints file"; }
listen="$(sed -n 's/.*"listen": *"\([^"]*\)".*/\1/p' "$WORK/endpoints.json")"
workers=()
for i in 1 2; do
  as_ferry /usr/bin/ferry-worker --coordinator "$listen" --id "pkg-w$i" >"$WORK/w$i.log" 2>&1 &
  workers+=($!)
done
for pid in "${workers[@]}"; do
  wait "$pid" || fail "a ferry-worker exited $? (see its log)"
done
wait "$coord" || { tail -5 "$WORK/m2.log"; fail "the fleet coordinator exited $?"; }
check_stores "$WORK/legacy.db" "$WORK/new2.db"
step "migration 2: stores equal"
