#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on 127.0.0.1 (random port, random password) for the journal
# tests, and prints the lines to eval:
#   eval "$(bash .ci/postgres.sh)"      # exports TWIML_FAILOVER_TEST_POSTGRES and TWIML_FAILOVER_PG_DATA
#   bash .ci/postgres.sh stop           # stops the server started above and deletes its data
# Installs PostgreSQL with apt when no server binaries are found. Logs go to stderr.
set -euo pipefail

bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

# initdb and postgres refuse to run as root: use the postgres user then.
as_db_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if [ "${1:-}" = stop ]; then
  dir="${TWIML_FAILOVER_PG_DATA:?set by the start call}"
  as_db_user "$(bindir)/pg_ctl" -D "$dir/data" -m fast stop >&2 || true
  rm -rf "$dir"
  exit 0
fi

if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/pg_ctl" ]; then
  echo "installing postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
fi
bin=$(bindir)

dir=$(mktemp -d /tmp/twiml-failover-pg.XXXXXX)
password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$password" > "$dir/pwfile"
if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
chmod 700 "$dir"
as_db_user "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 \
  --pwfile="$dir/pwfile" -E UTF8 --locale=C.UTF-8 >&2
rm -f "$dir/pwfile"

for _ in $(seq 20); do
  port=$((20000 + RANDOM % 30000))
  if as_db_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=200" \
      start >&2; then
    echo "export TWIML_FAILOVER_TEST_POSTGRES='postgres://postgres:$password@127.0.0.1:$port/postgres'"
    echo "export TWIML_FAILOVER_PG_DATA='$dir'"
    echo "postgres $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
    exit 0
  fi
  tail -3 "$dir/log" >&2 || true
done
echo "could not start postgres" >&2
exit 1
