#!/usr/bin/env bash
# Checks the systemd units in deploy/systemd without installing anything:
#   - `systemd-analyze verify` on copies whose /usr/bin/ferry-* (where the
#     Debian package puts the executables) point at BIN_DIR, so the check
#     covers the unit syntax, every directive, and that each ExecStart names an
#     executable file (the template unit is verified as an instance);
#     any message counts as a failure, not only a non-zero exit;
#   - every --flag of each ExecStart is listed by that executable's --help;
#   - every ${VAR} / $VAR of each ExecStart is set in deploy/ferry.env.example.
# The package test (deploy/package-test.sh) verifies the installed units too.
#
# Usage: check_units.sh [BIN_DIR]   (default build/bin)
# Exit: 0 ok, 1 a problem (printed), 77 systemd-analyze is not installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN_DIR="$(cd "${1:-$ROOT/build/bin}" && pwd)"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd unit check skipped: systemd-analyze is not installed (apt-get install systemd)"
  exit 77
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/ferry-units.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
problems=0
fail() {
  echo "$*"
  problems=$((problems + 1))
}

ENV_FILE="$ROOT/deploy/ferry.env.example"
units=("$ROOT"/deploy/systemd/*.service)
for unit in "${units[@]}"; do
  name="$(basename "$unit")"
  sed "s#/usr/bin/ferry-#$BIN_DIR/ferry-#g" "$unit" >"$TMP/$name"
  target="$TMP/$name"
  if [[ "$name" == *@.service ]]; then
    # a template is verified as an instance of itself
    target="$TMP/${name%@.service}@1.service"
    cp "$TMP/$name" "$target"
  fi
  out="$(cd "$TMP" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$target" 2>&1)" && rc=0 || rc=$?
  if [[ $rc -ne 0 || -n "$out" ]]; then
    fail "$name: systemd-analyze verify (exit $rc):"
    [[ -z "$out" ]] || echo "$out" | sed 's/^/  /'
  fi

  # ExecStart: the executable, its flags, its variables (continuation lines joined)
  exec_line="$(sed -n '/^ExecStart=/,/[^\\]$/p' "$unit" | tr -d '\\\n' | sed 's/^ExecStart=//')"
  if [[ -z "$exec_line" ]]; then
    fail "$name: no ExecStart"
    continue
  fi
  read -r -a words <<<"$exec_line"
  exe="${words[0]}"
  if [[ "$exe" != /usr/bin/ferry-* ]]; then
    fail "$name: ExecStart runs $exe, not one of the packaged /usr/bin/ferry-*"
    continue
  fi
  help="$("$BIN_DIR/$(basename "$exe")" --help 2>&1)" || true
  for w in "${words[@]:1}"; do
    if [[ "$w" =~ ^(--[a-z0-9-]+) ]] && ! grep -qE -- "${BASH_REMATCH[1]}\b" <<<"$help"; then
      fail "$name: $(basename "$exe") does not know ${BASH_REMATCH[1]} (not in its --help)"
    fi
  done
  for var in $(grep -oE '\$\{?[A-Z_][A-Z0-9_]*' <<<"$exec_line" | tr -d '${' | sort -u); do
    if ! grep -qE "^$var=" "$ENV_FILE"; then
      fail "$name: ExecStart uses \$$var, which deploy/ferry.env.example does not set"
    fi
  done
  echo "$name: checked (ExecStart $(basename "$exe"))"
done

if [[ $problems -ne 0 ]]; then
  echo "systemd units: $problems problem(s)"
  exit 1
fi
echo "systemd units: ${#units[@]} verified"
