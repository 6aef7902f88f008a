#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on 127.0.0.1 (random port, random password) for the journal
# tests, and prints the lines to eval:
#   eval "$(bash .ci/postgres.sh)"      # exports TWIML_FAILOVER_TEST_POSTGRES, TWIML_FAILOVER_PG_DATA,
#                                       # TWIML_FAILOVER_TEST_POSTGRES_CA (TLS is on, self-signed) and
#                                       # TWIML_FAILOVER_PG_SOCKET (its unix-socket folder, which any
#                                       # user may reach: tests connect as other users through it)
#   bash .ci/postgres.sh stop           # stops the server started above and deletes its data
# Installs PostgreSQL with apt when no server binaries are found. Logs go to stderr.
set -euo pipefail

bindir() {
  for d in /usr/lib/postgresql/*/bin; do
    if [ -d "$d" ]; then echo "$d"; fi
  done | sort -V | tail -1
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
mkdir "$dir/socket"
password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$password" > "$dir/pwfile"
if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
chmod 700 "$dir"
chmod 755 "$dir/socket"
as_db_user "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 \
  --pwfile="$dir/pwfile" -E UTF8 --locale=C.UTF-8 >&2
rm -f "$dir/pwfile"

# TLS too, so the journal's sslmode=verify-full path is tested: a throwaway CA and server cert.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=twiml-failover test CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$dir/data/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$dir/san.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 2 -extfile "$dir/san.ext" -out "$dir/data/server.crt" 2>/dev/null
rm -f "$dir/ca.key" "$dir/server.csr" "$dir/san.ext"
chmod 600 "$dir/data/server.key"
chmod 644 "$dir/ca.pem"
if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi

for _ in $(seq 20); do
  port=$((20000 + RANDOM % 30000))
  if as_db_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c fsync=on -c max_connections=200 -c ssl=on" \
      start >&2; then
    echo "export TWIML_FAILOVER_TEST_POSTGRES='postgres://postgres:$password@127.0.0.1:$port/postgres'"
    echo "export TWIML_FAILOVER_PG_DATA='$dir'"
    echo "export TWIML_FAILOVER_TEST_POSTGRES_CA='$dir/ca.pem'"
    echo "export TWIML_FAILOVER_PG_SOCKET='$dir/socket'"
    echo "postgres $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
    exit 0
  fi
  tail -3 "$dir/log" >&2 || true
done
echo "could not start postgres" >&2
exit 1
