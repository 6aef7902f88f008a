#!/usr/bin/env bash
# Memory per connection, by state (issue 13):   bash benches/memory.sh
#
# For each state, starts a fresh twiml-failover (release build, shipped templates) with every
# timeout and budget opened wide so that the connections stay in that state, opens N connections
# in it, and reports (RSS with them - RSS before) / N. Then the connections close, and the RSS
# 10 s later says how much memory went back to the system.
#   idle        connected, nothing sent
#   head-40     40 bytes of a request head, never finished
#   head-60k    60,000 bytes of head (near the 64 KiB head buffer), never finished
#   body-1      a head announcing 60,000 bytes of body, 1 byte of it sent
#   body-59999  the same with 59,999 bytes sent: the body buffered in full
#   h2-idle     TLS + HTTP/2 connection, no stream
#   h2-streams  TLS + HTTP/2 connection with every allowed stream sending a slow body
#   tls-idle    TLS (HTTP/1.1) connection, handshake done, nothing sent
#
# Environment: MEMORY_CONNS=1000, MEMORY_STATES="idle head-40 ...", MEMORY_BIN=PATH (another
# build), MEMORY_SERVER_ARGS="" (extra `serve` flags, e.g. to compare allocator settings).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/memory-run
mkdir -p "$OUT"
N=${MEMORY_CONNS:-1000}
STATES=${MEMORY_STATES:-"idle head-40 head-60k body-1 body-59999 tls-idle h2-idle h2-streams"}
export TWILIO_AUTH_TOKEN=bench-token-not-a-secret-0123456789ab
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say() { printf '%s\n' "$*" >&2; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
say "== building (release)"
cargo build --release --quiet --bin twiml-failover --example attack
BIN=${MEMORY_BIN:-$TARGET/release/twiml-failover}
ATTACK=$TARGET/release/examples/attack
"$ATTACK" cert "$OUT"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

HOLD=25
printf '%-11s %8s %10s %10s %12s %12s\n' state conns before_kib with_kib per_conn_kib after_10s_kib | tee "$OUT/result.txt"
port=18400
for state in $STATES; do
  port=$((port + 1))
  tls=()
  case $state in h2-* | tls-*) tls=(--tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem") ;; esac
  # shellcheck disable=SC2086
  "$BIN" serve --listen "127.0.0.1:$port" --templates "$ROOT/twiml-templates" \
    --config "$ROOT/twiml-failover.toml" --watch false "${tls[@]}" \
    --max-connections 100000 --header-timeout 3600 --request-timeout 3600 --min-body-rate 0 \
    --idle-timeout 3600 --max-connection-age 3600 --max-body-reads 1000000 \
    --body-buffer-bytes 100000000000 ${MEMORY_SERVER_ARGS:-} 2>"$OUT/$state.log" &
  pid=$!
  sleep 1
  before=$(rss "$pid")
  unset ATTACK_CERT
  case $state in
    idle) "$ATTACK" idle "127.0.0.1:$port" "$N" "$HOLD" >/dev/null & ;;
    head-40) "$ATTACK" slow-header "127.0.0.1:$port" "$N" "$HOLD" 40 >/dev/null & ;;
    head-60k) "$ATTACK" slow-header "127.0.0.1:$port" "$N" "$HOLD" 60000 >/dev/null & ;;
    body-1) "$ATTACK" slow-body "127.0.0.1:$port" "$N" "$HOLD" 1 >/dev/null & ;;
    body-59999) "$ATTACK" slow-body "127.0.0.1:$port" "$N" "$HOLD" 59999 >/dev/null & ;;
    tls-idle) ATTACK_CERT=$OUT/cert.pem "$ATTACK" idle "127.0.0.1:$port" "$N" "$HOLD" >/dev/null & ;;
    h2-idle) "$ATTACK" h2 "127.0.0.1:$port" "$N" 0 "$HOLD" "$OUT/cert.pem" >/dev/null & ;;
    h2-streams) "$ATTACK" h2 "127.0.0.1:$port" "$N" 128 "$HOLD" "$OUT/cert.pem" >/dev/null & ;;
  esac
  client=$!
  # Let every connection reach its state (TLS handshakes on one core take a while).
  sleep 15
  with=$(rss "$pid")
  wait "$client" || true
  sleep 10
  after=$(rss "$pid")
  kill -TERM "$pid"
  wait "$pid" || true
  printf '%-11s %8d %10d %10d %12.1f %12d\n' "$state" "$N" "$before" "$with" \
    "$(awk -v a="$with" -v b="$before" -v n="$N" 'BEGIN { print (a - b) / n }')" "$after" |
    tee -a "$OUT/result.txt"
done
