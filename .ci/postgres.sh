#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on a free loopback port; print its SQLAlchemy URL.
# Usage: eval "$(.ci/postgres.sh start DIR)"  ...  .ci/postgres.sh stop DIR
set -euo pipefail

action=${1:?start or stop}
dir=${2:?directory for the cluster}

pg_bin=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && pg_bin=$d
done
if [ -z "$pg_bin" ] && command -v initdb >/dev/null; then
  pg_bin=$(dirname "$(command -v initdb)")
fi
if [ -z "$pg_bin" ]; then
  echo "PostgreSQL binaries not found; install them (apt-get install postgresql-15)" >&2
  exit 1
fi

# initdb refuses to run as root: use the postgres account when we are root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$action" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && { id postgres >/dev/null 2>&1 || useradd --system postgres; chown postgres "$dir"; }
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log"
    as_owner "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null
    as_owner "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres slipway_test
    echo "export SLIPWAY_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$port/slipway_test"
    ;;
  stop)
    as_owner "$pg_bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
    ;;
  *)
    echo "unknown action $action" >&2
    exit 2
    ;;
esac
