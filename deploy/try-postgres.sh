#!/usr/bin/env bash
# Try buildcontrol on PostgreSQL on one machine: a throw-away PostgreSQL in a temp dir
# (its own port, no system service touched), the role and database the server needs,
# then `buildcontrol serve --store ...` in the foreground. Ctrl-C stops both and
# removes the database directory.
#
#   deploy/try-postgres.sh [extra serve flags...]     (PGPORT=55432 by default)
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql) and
# buildcontrol on PATH (or .venv/bin). As root, PostgreSQL runs as the `postgres` user.
set -euo pipefail

PGPORT="${PGPORT:-55432}"
bin_dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$bin_dir" ]; then
    bin_dir="$(dirname "$(command -v initdb || echo /nonexistent/initdb)")"
fi
[ -x "$bin_dir/initdb" ] || { echo "no initdb: install PostgreSQL (apt-get install postgresql)" >&2; exit 1; }
buildcontrol="$(command -v buildcontrol || echo "$(dirname "$0")/../.venv/bin/buildcontrol")"

work="$(mktemp -d /tmp/buildcontrol-pg.XXXXXX)"
as_pg=()
if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$work"
    as_pg=(runuser -u postgres --)
fi
cleanup() {
    "${as_pg[@]}" "$bin_dir/pg_ctl" stop -m fast -D "$work/data" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"${as_pg[@]}" "$bin_dir/initdb" -A trust -U postgres -E UTF8 -D "$work/data" >/dev/null
"${as_pg[@]}" "$bin_dir/pg_ctl" start -w -D "$work/data" -l "$work/postgres.log" \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $work" >/dev/null

# The server's role owns its database: migrations create the tables (docs/operations.md).
psql=("${as_pg[@]}" "$bin_dir/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -q)
"${psql[@]}" -c "CREATE ROLE buildcontrol LOGIN"
"${psql[@]}" -c "CREATE DATABASE buildcontrol OWNER buildcontrol"

export BUILDCONTROL_STORE="postgresql://buildcontrol@127.0.0.1:$PGPORT/buildcontrol"
echo "PostgreSQL on 127.0.0.1:$PGPORT; store $BUILDCONTROL_STORE"
"$buildcontrol" serve --data-dir "$work/server" --auth off "$@"
