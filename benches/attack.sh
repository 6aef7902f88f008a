#!/usr/bin/env bash
# Load test under attack (issue 13), one command:   bash benches/attack.sh
#
# Starts twiml-failover over HTTPS on loopback (shipped templates, release build), then at once:
#   - 1,100 HTTP/1.1 connections sending POST /sms with Content-Length 60000, then 1 byte a second
#     (reconnecting when cut), no signature;
#   - 9 HTTP/2 connections (TLS, ALPN h2), each keeping as many slow-body streams open as the
#     server allows (asks for 128; the server caps it at its max concurrent streams);
#   - genuine signed SMS webhooks at a fixed rate, one new connection per request;
#   - with ATTACK_BAD_SIG, that many requests a second signed with the wrong token (403), each on
#     a new connection.
# Prints the genuine success rate and p50/p99/max latency, the attackers' connection counts, the
# server's peak RSS (VmHWM) and RSS 10 s after the attack ended, the server's log lines per second
# during the attack, and for 403 and 408 the requests counted in /metrics against the lines written
# plus those the log's summaries say were held back (they must be equal).
#
# Environment (all optional):
#   ATTACK_BASELINE=PATH    also run another twiml-failover binary first (e.g. main's, for
#                           "before"); both runs use the same clients and settings
#   ATTACK_SECONDS=20       length of the attack; genuine traffic starts 5 s into it
#   ATTACK_SLOW_BODY=1100   slow-body HTTP/1.1 connections
#   ATTACK_H2_CONNS=9 ATTACK_H2_STREAMS=128
#   ATTACK_RATE=20          genuine requests per second
#   ATTACK_BAD_SIG=0        bad-signature requests per second (issue 23's log test: 200, with
#                           ATTACK_H2_CONNS=0 ATTACK_RATE=5)
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
BAD=${ATTACK_BAD_SIG:-0}
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
  local lines_before started
  lines_before=$(wc -l <"$OUT/$name.log")
  started=$(date +%s.%N)
  "$ATTACK" slow-body "127.0.0.1:$port" "$SLOW" "$SECS" >"$OUT/$name.slow" &
  local slow=$!
  "$ATTACK" h2 "127.0.0.1:$port" "$H2C" "$H2S" "$SECS" "$OUT/cert.pem" >"$OUT/$name.h2" &
  local h2=$!
  echo "RESULT sent=0" >"$OUT/$name.bad"
  local bad=
  if [ "$BAD" != 0 ]; then
    "$ATTACK" bad-signature "127.0.0.1:$port" "$BAD" "$SECS" >"$OUT/$name.bad" &
    bad=$!
  fi
  sleep 5
  local genuine
  genuine=$("$ATTACK" genuine "127.0.0.1:$port" "$RATE" "$((SECS - 7))")
  # shellcheck disable=SC2086
  wait "$slow" "$h2" $bad || true
  local lines_during elapsed
  sleep 0.1
  lines_during=$(($(wc -l <"$OUT/$name.log") - lines_before))
  elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  local peak after
  peak=$(rss_kib "$pid" VmHWM)
  sleep 10
  after=$(rss_kib "$pid" VmRSS)
  # Read once every cut connection has been answered; the summary at exit completes the log's side.
  curl -sk "https://127.0.0.1:$port/metrics" >"$OUT/$name.metrics" || true
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  printf '%-10s genuine: %s\n' "$name" "${genuine#RESULT }"
  printf '%-10s attackers: slow-body %s; h2 %s\n' "$name" "$(sed 's/RESULT //' "$OUT/$name.slow")" \
    "$(sed 's/RESULT //' "$OUT/$name.h2")"
  printf '%-10s rss: idle %d KiB, peak %d KiB, 10 s after %d KiB\n' "$name" "$idle_rss" "$peak" "$after"
  printf '%-10s bad signatures: %s\n' "$name" "$(sed 's/RESULT //' "$OUT/$name.bad")"
  printf '%-10s log: %d lines in %.1f s of attack (%.1f lines/s), genuine %s/s included\n' "$name" \
    "$lines_during" "$elapsed" "$(awk -v n="$lines_during" -v s="$elapsed" 'BEGIN {print n / s}')" "$RATE"
  local status counted lines held
  for status in 403 408; do
    counted=$(awk -v s="status=\"$status\"" '/^twiml_failover_requests_total\{/ && index($0, s) {n += $NF} END {print n + 0}' "$OUT/$name.metrics")
    lines=$(grep -c " status=$status " "$OUT/$name.log" || true)
    held=$({ grep 'held back' "$OUT/$name.log" || true; } | { grep -o 'by_status="[^"]*"' || true; } |
      tr ' "' '\n\n' | awk -F= -v s="$status" '$1 == s {n += $2} END {print n + 0}')
    printf '%-10s %s: %d in /metrics, %d in the log (%d lines + %d held back)\n' "$name" "$status" \
      "$counted" "$((lines + held))" "$lines" "$held"
  done
}

{
  [ -n "${ATTACK_BASELINE:-}" ] && run_one before "$ATTACK_BASELINE" 18190
  [ -n "${ATTACK_ONLY_BASELINE:-}" ] || run_one after "$TARGET/release/twiml-failover" 18191
} | tee "$OUT/result.txt"
