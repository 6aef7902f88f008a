#!/usr/bin/env bash
# Load test under attack (issue 13), one command:   bash benches/attack.sh
#
# Starts twiml-failover over HTTPS on loopback (shipped templates, release build), then at once:
#   - 1,100 HTTP/1.1 connections sending POST /sms with Content-Length 60000, then 1 byte a second
#     (reconnecting when cut), no signature;
#   - 9 HTTP/2 connections (TLS, ALPN h2), each keeping as many slow-body streams open as the
#     server allows (asks for 128; the server caps it at its max concurrent streams);
#   - genuine signed SMS webhooks at a fixed rate, one new connection per request.
# Prints the genuine success rate and p50/p99/max latency, the attackers' connection counts, and
# the server's peak RSS (VmHWM) and RSS 10 s after the attack ended.
#
# Environment (all optional):
#   ATTACK_BASELINE=PATH    also run another twiml-failover binary first (e.g. main's, for
#                           "before"); both runs use the same clients and settings
#   ATTACK_SECONDS=20       length of the attack; genuine traffic starts 5 s into it
#   ATTACK_SLOW_BODY=1100   slow-body HTTP/1.1 connections
#   ATTACK_H2_CONNS=9 ATTACK_H2_STREAMS=128
#   ATTACK_RATE=20          genuine requests per second
#   ATTACK_SERVER_ARGS=""   extra `serve` flags for both runs
#   ATTACK_ONLY_BASELINE=1  run only the baseline
# Needs about 2 x (slow-body + h2) file descriptors on each side; raises `ulimit -n` as far as the
# hard limit allows. Results and server logs go to target/attack-run/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/attack-run
mkdir -p "$OUT"
SECS=${ATTACK_SECONDS:-20}
SLOW=${ATTACK_SLOW_BODY:-1100}
H2C=${ATTACK_H2_CONNS:-9}
H2S=${ATTACK_H2_STREAMS:-128}
RATE=${ATTACK_RATE:-20}
export TWILIO_AUTH_TOKEN=bench-token-not-a-secret-0123456789ab
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say() { printf '%s\n' "$*" >&2; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
say "== building (release)"
cargo build --release --quiet --bin twiml-failover --example attack
ATTACK=$TARGET/release/examples/attack
"$ATTACK" cert "$OUT"
export ATTACK_CERT=$OUT/cert.pem

rss_kib() { awk "/^$2:/ {print \$2}" "/proc/$1/status" 2>/dev/null || echo 0; }

run_one() {
  local name=$1 bin=$2 port=$3
  say "== $name: $bin"
  # shellcheck disable=SC2086
  "$bin" serve --listen "127.0.0.1:$port" --role primary --templates "$ROOT/twiml-templates" \
    --config "$ROOT/twiml-failover.toml" --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem" \
    --watch false ${ATTACK_SERVER_ARGS:-} 2>"$OUT/$name.log" &
  local pid=$!
  for _ in $(seq 100); do
    curl -skf "https://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
  done
  local idle_rss
  idle_rss=$(rss_kib "$pid" VmRSS)
  "$ATTACK" slow-body "127.0.0.1:$port" "$SLOW" "$SECS" >"$OUT/$name.slow" &
  local slow=$!
  "$ATTACK" h2 "127.0.0.1:$port" "$H2C" "$H2S" "$SECS" "$OUT/cert.pem" >"$OUT/$name.h2" &
  local h2=$!
  sleep 5
  local genuine
  genuine=$("$ATTACK" genuine "127.0.0.1:$port" "$RATE" "$((SECS - 7))")
  wait "$slow" "$h2" || true
  local peak after
  peak=$(rss_kib "$pid" VmHWM)
  sleep 10
  after=$(rss_kib "$pid" VmRSS)
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  printf '%-10s genuine: %s\n' "$name" "${genuine#RESULT }"
  printf '%-10s attackers: slow-body %s; h2 %s\n' "$name" "$(sed 's/RESULT //' "$OUT/$name.slow")" \
    "$(sed 's/RESULT //' "$OUT/$name.h2")"
  printf '%-10s rss: idle %d KiB, peak %d KiB, 10 s after %d KiB\n' "$name" "$idle_rss" "$peak" "$after"
}

{
  [ -n "${ATTACK_BASELINE:-}" ] && run_one before "$ATTACK_BASELINE" 18190
  [ -n "${ATTACK_ONLY_BASELINE:-}" ] || run_one after "$TARGET/release/twiml-failover" 18191
} | tee "$OUT/result.txt"
