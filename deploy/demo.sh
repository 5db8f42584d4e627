#!/usr/bin/env bash
# The one-command demo: installs the dependencies it needs, builds the three
# ferry executables (not the test suite: `bash deploy/test.sh` builds the
# rest in the same build directory), generates a demo legacy store (SQLite)
# under demo/, migrates it into demo/new.db with an embedded coordinator and
# 4 in-process workers, then verifies the result independently with the
# sqlite3 CLI.
#
#   bash deploy/demo.sh [--rows N] [--workers N] [--regenerate]
#   bash deploy/demo.sh --spec [--rows N] [--workers N]
#
# --spec: the worked v1 -> v2 example of a migration between formats (README,
# "Migrating between formats"): the v1 shop store of
# deploy/examples/make-v1-store.sql (N/3 users, 2 orders each) into
# demo/v2.db through deploy/examples/v1-to-v2.toml — after a --dry-run —,
# then checked with the sqlite3 CLI against the spec's own SQL and with
# `ferryctl verify`.
#
# Environment: ROWS (default 1000000), WORKERS (default 4), FERRY_BUILD_DIR
# (default build), FERRY_SKIP_BUILD=1 to reuse an existing build,
# FERRY_SKIP_DEPS=1 to skip the package check.
# Exit status: 0 when the migration succeeded and verification passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROWS="${ROWS:-1000000}"
WORKERS="${WORKERS:-4}"
REGENERATE=0
SPEC_DEMO=0
usage() {
  sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="${2:?--rows needs a number}"; shift 2 ;;
    --rows=*) ROWS="${1#*=}"; shift ;;
    --workers) WORKERS="${2:?--workers needs a number}"; shift 2 ;;
    --workers=*) WORKERS="${1#*=}"; shift ;;
    --regenerate) REGENERATE=1; shift ;;
    --spec) SPEC_DEMO=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo: error: unknown argument '$1' (see bash deploy/demo.sh --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$ROWS" =~ ^[0-9]+$ ]] || [[ "$ROWS" -lt 10 ]]; then
  echo "demo: error: ROWS must be a whole number of at least 10 (got '$ROWS')" >&2
  exit 2
fi
if ! [[ "$WORKERS" =~ ^[0-9]+$ ]] || [[ "$WORKERS" -lt 1 ]]; then
  echo "demo: error: WORKERS must be a whole number of at least 1 (got '$WORKERS')" >&2
  exit 2
fi

BUILD_DIR="${FERRY_BUILD_DIR:-build}"
if [[ "${FERRY_SKIP_BUILD:-0}" != 1 ]]; then
  # Only what the demo runs: no tests, so no GoogleTest, PostgreSQL server or
  # other test-only packages either.
  if [[ "${FERRY_SKIP_DEPS:-0}" != 1 ]]; then
    bash "$ROOT/deploy/install-deps.sh" --no-test-packages
  fi
  FERRY_SKIP_DEPS=1 FERRY_BUILD_TESTING=OFF \
    bash "$ROOT/deploy/build.sh" ferry-coordinator ferry-worker ferryctl
fi
COORDINATOR="$BUILD_DIR/bin/ferry-coordinator"
FERRYCTL="$BUILD_DIR/bin/ferryctl"
if [[ ! -x "$COORDINATOR" ]]; then
  echo "demo: error: $COORDINATOR is missing; run bash deploy/build.sh" >&2
  exit 1
fi

DEMO="$ROOT/demo"
mkdir -p "$DEMO"

# ---------------------------------------------------------------------------
# --spec: the v1 -> v2 example through a migration spec.
# ---------------------------------------------------------------------------
spec_demo() {
  local spec="$ROOT/deploy/examples/v1-to-v2.toml"
  local v1="$DEMO/v1.db" v2="$DEMO/v2.db" state="$DEMO/spec-state.db"
  local users=$(( ROWS / 3 > 0 ? ROWS / 3 : 1 ))
  rm -f "$v1" "$v1-journal" "$v2" "$v2-wal" "$v2-shm" "$state" "$state-wal" "$state-shm" "$state.lock"
  echo "demo: generating the v1 store $v1 ($users users, $(( 2 * users )) orders)"
  sqlite3 -batch -bail -cmd ".parameter set @users $users" "$v1" \
    < "$ROOT/deploy/examples/make-v1-store.sql" >/dev/null
  local args=(--source "sqlite:$v1" --target "sqlite:$v2" --spec "$spec")
  echo "demo: ferry-coordinator ${args[*]} --dry-run"
  "$COORDINATOR" "${args[@]}" --dry-run
  echo
  echo "demo: migrating with $WORKERS local workers"
  "$COORDINATOR" "${args[@]}" --state "$state" --local-workers "$WORKERS" \
    --status-endpoint tcp://127.0.0.1:0 --listen tcp://127.0.0.1:0
  echo "demo: verifying with the spec's own SQL (sqlite3 CLI)"
  local failures=()
  # target | the rows the spec makes, as SQL on the v1 store | the v2 columns
  local checks=(
    "accounts|SELECT id, lower(trim(email)), created FROM users WHERE deleted_at IS NULL|account_id, email, created_at"
    "profiles|SELECT id, full_name, coalesce(country, 'ZZ') FROM users WHERE deleted_at IS NULL AND full_name IS NOT NULL|account_id, display_name, country"
    "orders|SELECT id, user_id, CAST(substr(packed, 8) AS TEXT) FROM orders WHERE hex(substr(packed, 5, 2)) <> '0000'|order_id, account_id, currency"
  )
  local c t want cols out
  for c in "${checks[@]}"; do
    IFS='|' read -r t want cols <<<"$c"
    out="$(sqlite3 -batch -bail -separator ' ' "$v1" <<SQL
ATTACH '$v2' AS b;
SELECT (SELECT count(*) FROM ($want)), (SELECT count(*) FROM b.$t),
       (SELECT count(*) FROM ($want EXCEPT SELECT $cols FROM b.$t)),
       (SELECT count(*) FROM (SELECT $cols FROM b.$t EXCEPT $want));
SQL
    )"
    read -r n_want n_new only_want only_new <<<"$out"
    printf 'demo:   %-9s expected %7s  new %7s  missing %s  unexpected %s\n' \
      "$t" "$n_want" "$n_new" "$only_want" "$only_new"
    if [[ "$n_want" != "$n_new" || "$only_want" != 0 || "$only_new" != 0 ]]; then
      failures+=("$t: expected $n_want rows, new store $n_new, $only_want missing, $only_new unexpected")
    fi
  done
  echo "demo: ferryctl verify --state $state (every column, through the spec and its Lua function)"
  "$FERRYCTL" verify --state "$state" || failures+=("ferryctl verify failed")
  if [[ ${#failures[@]} -eq 0 ]]; then
    echo "verification: OK"
    exit 0
  fi
  echo "verification: FAILED ($(printf '%s; ' "${failures[@]}"))"
  exit 1
}
if [[ "$SPEC_DEMO" == 1 ]]; then
  spec_demo
fi

LEGACY="$DEMO/legacy.db"
TARGET="$DEMO/new.db"
STATE="$DEMO/state.db"
mkdir -p "$DEMO"

now() { date +%s.%N; }

# ---------------------------------------------------------------------------
# 1. The legacy store: users (rowid alias PK, NULLs, REAL, BLOB, index),
#    kv (random BLOB keys), orders (composite PK, WITHOUT ROWID) and an
#    empty audit_log without a primary key (keyed by rowid).
# ---------------------------------------------------------------------------
generate() {
  local users=$(( ROWS * 4 / 10 ))
  local kv=$(( ROWS * 4 / 10 ))
  local orders=$(( ROWS - users - kv ))
  local customers=$(( orders / 20 > 0 ? orders / 20 : 1 ))
  local tmp="$LEGACY.tmp"
  rm -f "$tmp" "$tmp-journal"
  echo "demo: generating $LEGACY ($users users, $kv kv, $orders orders, 0 audit_log)"
  local t0; t0="$(now)"
  sqlite3 -batch -bail "$tmp" >/dev/null <<SQL
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
PRAGMA cache_size=-262144;
PRAGMA temp_store=MEMORY;
BEGIN;
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  email TEXT,
  score REAL,
  created INTEGER,
  avatar BLOB
);
CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB);
CREATE TABLE orders (
  customer TEXT NOT NULL,
  seq INTEGER NOT NULL,
  amount REAL,
  status TEXT,
  note TEXT,
  PRIMARY KEY (customer, seq)
) WITHOUT ROWID;
CREATE TABLE audit_log (ts INTEGER, actor TEXT, action TEXT, detail TEXT);
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $users)
INSERT INTO users (id, name, email, score, created, avatar)
SELECT i,
       CASE WHEN i % 7 = 0 THEN 'Zoë Ünïcode ' || i ELSE 'user ' || i END,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' || i || '@example.com' END,
       (abs(random()) % 1000000) / 100.0 - 5000.0,
       1500000000 + i * 37,
       CASE WHEN i % 3 = 0 THEN randomblob(32 + (i % 97)) ELSE NULL END
FROM s;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $kv)
INSERT OR IGNORE INTO kv (k, v) SELECT randomblob(16), randomblob(100) FROM s;
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < $orders - 1)
INSERT INTO orders (customer, seq, amount, status, note)
SELECT printf('cust-%06d', i % $customers), i / $customers,
       (abs(random()) % 100000) / 100.0,
       CASE i % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE 'returned' END,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'order note ' || hex(randomblob(8)) END
FROM s;
CREATE INDEX users_email ON users (email);
COMMIT;
SQL
  mv -f "$tmp" "$LEGACY"
  echo "$ROWS" > "$LEGACY.rows"
  awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "demo: generated in %.1f s\n", b - a }'
}

if [[ "$REGENERATE" == 1 || ! -f "$LEGACY" || "$(cat "$LEGACY.rows" 2>/dev/null || true)" != "$ROWS" ]]; then
  generate
else
  echo "demo: reusing $LEGACY ($ROWS rows; --regenerate to make a new one)"
fi

# ---------------------------------------------------------------------------
# 2. Migrate: a fresh target and state, one command, embedded workers.
# ---------------------------------------------------------------------------
rm -f "$TARGET" "$TARGET-wal" "$TARGET-shm" "$TARGET-journal" \
      "$STATE" "$STATE-wal" "$STATE-shm" "$STATE-journal" "$STATE.lock"
echo "demo: migrating sqlite:$LEGACY -> sqlite:$TARGET with $WORKERS local workers"
SUMMARY_FILE="$DEMO/coordinator.out"
t0="$(now)"
set +e
"$COORDINATOR" \
  --source "sqlite:$LEGACY" \
  --target "sqlite:$TARGET" \
  --state "$STATE" \
  --local-workers "$WORKERS" \
  --status-endpoint tcp://127.0.0.1:0 \
  --listen tcp://127.0.0.1:0 | tee "$SUMMARY_FILE"
rc=${PIPESTATUS[0]}
set -e
t1="$(now)"
if [[ "$rc" -ne 0 ]]; then
  echo "demo: error: ferry-coordinator exited with status $rc" >&2
  echo "verification: FAILED (ferry-coordinator exited with status $rc)"
  exit 1
fi

# ---------------------------------------------------------------------------
# 3. Verify independently with the sqlite3 CLI: per table, the row counts and
#    both set differences (EXCEPT) over every column plus each column's
#    storage class; rowid too for tables without a declared primary key.
#    Every index of the legacy store exists in the new one, and the new
#    store's __ferry_meta says version 2.
# ---------------------------------------------------------------------------
echo "demo: verifying"
sql_quote() { printf "'%s'" "${1//\'/\'\'}"; }
ident() { printf '"%s"' "${1//\"/\"\"}"; }
q() { sqlite3 -batch -bail -noheader -list "$@"; }

failures=()
total_rows=0
mapfile -t tables < <(q "$LEGACY" \
  "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\\' AND name <> '__ferry_meta' ORDER BY name")
for t in "${tables[@]}"; do
  tq="$(ident "$t")"
  exists="$(q "$TARGET" "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $(sql_quote "$t")")"
  if [[ "$exists" != 1 ]]; then
    failures+=("table $t missing in the new store")
    continue
  fi
  mapfile -t cols < <(q "$LEGACY" "SELECT name FROM pragma_table_info($(sql_quote "$t")) ORDER BY cid")
  haspk="$(q "$LEGACY" "SELECT count(*) FROM pragma_table_info($(sql_quote "$t")) WHERE pk > 0")"
  select=""
  [[ "$haspk" == 0 ]] && select="rowid, "
  for c in "${cols[@]}"; do select+="$(ident "$c"), "; done
  for c in "${cols[@]}"; do select+="typeof($(ident "$c")), "; done
  select="${select%, }"
  if ! out="$(q -separator ' ' "$LEGACY" 2>&1 <<SQL
PRAGMA cache_size=-131072;
ATTACH $(sql_quote "$TARGET") AS b;
SELECT (SELECT count(*) FROM main.$tq),
       (SELECT count(*) FROM b.$tq),
       (SELECT count(*) FROM (SELECT $select FROM main.$tq EXCEPT SELECT $select FROM b.$tq)),
       (SELECT count(*) FROM (SELECT $select FROM b.$tq EXCEPT SELECT $select FROM main.$tq));
SQL
  )"; then
    failures+=("$t: comparison query failed: $(echo "$out" | tr '\n' ' ')")
    continue
  fi
  read -r n_old n_new only_old only_new <<<"$out"
  printf 'demo:   %-12s legacy %9s  new %9s  only-in-legacy %s  only-in-new %s\n' \
    "$t" "$n_old" "$n_new" "$only_old" "$only_new"
  total_rows=$(( total_rows + n_old ))
  if [[ "$n_old" != "$n_new" || "$only_old" != 0 || "$only_new" != 0 ]]; then
    failures+=("$t: legacy $n_old rows, new $n_new rows, $only_old only in legacy, $only_new only in new")
  fi
done
mapfile -t indexes < <(q "$LEGACY" \
  "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
for i in "${indexes[@]}"; do
  found="$(q "$TARGET" "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = $(sql_quote "$i")")"
  [[ "$found" == 1 ]] || failures+=("index $i missing in the new store")
done
version="$(q "$TARGET" "SELECT value FROM __ferry_meta WHERE key = 'version'" 2>&1 || true)"
if [[ "$version" != 2 ]]; then
  failures+=("new store version is '${version:-absent}', expected 2")
fi

# ---------------------------------------------------------------------------
# 4. ferry's own check, as an operator runs it: `ferryctl verify` reads the
#    plan from the state file and compares both stores range by range, row
#    for row, and each legacy range against the digest recorded at copy time.
# ---------------------------------------------------------------------------
echo "demo: ferryctl verify --state $STATE"
set +e
"$FERRYCTL" verify --state "$STATE"
vrc=$?
set -e
[[ "$vrc" -eq 0 ]] || failures+=("ferryctl verify exited with status $vrc")

size() { stat -c %s "$1" 2>/dev/null || echo 0; }
legacy_bytes="$(size "$LEGACY")"
new_bytes=$(( $(size "$TARGET") + $(size "$TARGET-wal") ))
secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
rate="$(awk -v r="$total_rows" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? r / s : 0) }')"

echo
echo "=== ferry demo summary ==="
echo "rows:         $total_rows (${#tables[@]} tables)"
echo "bytes:        legacy $legacy_bytes, new $new_bytes ($(awk -v b="$legacy_bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB legacy file)"
echo "seconds:      $secs (ferry-coordinator wall clock, $WORKERS local workers)"
echo "rows/s:       $rate"
if [[ ${#failures[@]} -eq 0 ]]; then
  echo "verification: OK"
  exit 0
fi
msg="$(printf '%s; ' "${failures[@]}")"
echo "verification: FAILED (${msg%; })"
exit 1
