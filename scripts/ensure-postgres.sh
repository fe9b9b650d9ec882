#!/usr/bin/env bash
# Make sure PostgreSQL server binaries exist (initdb, pg_ctl); install Debian's package if not.
set -euo pipefail
for dir in ${PG_BIN:-} /usr/lib/postgresql/*/bin; do
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then exit 0; fi
done
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then exit 0; fi
echo "ensure-postgres: PostgreSQL server binaries not found; installing Debian's postgresql" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql >/dev/null
# Debian's package starts a cluster of its own; the tests do not use it.
$SUDO pg_dropcluster --stop "$(ls /usr/lib/postgresql | sort -V | tail -n1)" main 2>/dev/null || true
