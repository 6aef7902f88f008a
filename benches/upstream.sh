#!/usr/bin/env bash
# What upstream mode costs: the same signed SMS webhook sent straight to a TwiML app and through a
# twiml-failover primary in upstream mode in front of it, side by side in one run.
#   bash benches/upstream.sh                     # 300 req/s for 10 s, then wrk -c32 for 10 s
#   RATE=1000 SECONDS_PER_RUN=20 bash benches/upstream.sh
# The app is another twiml-failover primary (no upstream): it validates the signature the proxy
# recomputed for its URL and answers from its template, in microseconds, so what the proxy adds is
# what is measured. Latency at a fixed rate comes from examples/loadgen.rs (measured from each
# request's intended send time); throughput from wrk (benches/sms.lua). Each pair runs direct then
# proxy, twice, alternating, so a noisy neighbour hits both. Prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin twiml-failover --example loadgen >&2
bin=$PWD/target/release/twiml-failover
loadgen=$PWD/target/release/examples/loadgen
rate=${RATE:-300}
seconds=${SECONDS_PER_RUN:-10}
dir=$(mktemp -d)
export TWILIO_AUTH_TOKEN=bench-token-not-secret
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
app_port=$(free_port)
proxy_port=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

wait_up() {
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2
  return 1
}

"$bin" serve --listen "127.0.0.1:$app_port" --role primary --templates twiml-templates --config twiml-failover.toml \
  --log-format json >"$dir/app.log" 2>&1 &
pids+=($!)
"$bin" serve --listen "127.0.0.1:$proxy_port" --role primary --templates twiml-templates --config twiml-failover.toml \
  --upstream "http://127.0.0.1:$app_port" --upstream-max-in-flight 256 \
  --log-format json >"$dir/proxy.log" 2>&1 &
pids+=($!)
wait_up "$app_port"
wait_up "$proxy_port"

# The same body, signed for each server's URL (each rebuilds it from Host).
app_sig=$(python3 benches/make_request.py "http://127.0.0.1:$app_port/sms" "$dir/body")
proxy_sig=$(python3 benches/make_request.py "http://127.0.0.1:$proxy_port/sms" "$dir/body")
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"; }

# Warm-up (connections, the app's and the proxy's pools).
BENCH_BODY_FILE=$dir/body BENCH_SIGNATURE=$proxy_sig wrk -t1 -c16 -d2s -s benches/sms.lua \
  "http://127.0.0.1:$proxy_port" >/dev/null

declare -A p50 p99 rps failed
for round in 1 2; do
  for side in direct proxy; do
    if [ "$side" = direct ]; then port=$app_port sig=$app_sig; else port=$proxy_port sig=$proxy_sig; fi
    line=$("$loadgen" rate "127.0.0.1:$port" "$dir/body" "$sig" "$rate" "$seconds" 16 | grep RESULT)
    p50[$side,$round]=$(field p50_us "$line")
    p99[$side,$round]=$(field p99_us "$line")
    failed[$side,$round]=$(field failed "$line")
    line=$(BENCH_BODY_FILE=$dir/body BENCH_SIGNATURE=$sig wrk -t1 -c32 -d"${seconds}s" \
      -s benches/sms.lua "http://127.0.0.1:$port" | grep RESULT)
    rps[$side,$round]=$(field rps "$line")
    non2xx=$(field non2xx "$line")
    [ "$non2xx" = 0 ] || echo "warning: $side round $round: $non2xx non-2xx answers" >&2
  done
done

# Every proxied answer must have come from the app, not from a degraded template.
echo "proxied webhooks by outcome (upstream = the app's answer):"
grep -o '"upstream_outcome":"[a-z_0-9]*"' "$dir/proxy.log" | sort | uniq -c

printf '\nUpstream mode, %s req/s for %s s (loadgen, 16 connections) and wrk -c32 for %s s; %s cores\n' \
  "$rate" "$seconds" "$seconds" "$(nproc)"
printf '| round | path   | p50 ms | p99 ms | failed | wrk req/s |\n|---|---|---|---|---|---|\n'
for round in 1 2; do
  for side in direct proxy; do
    awk -v r="$round" -v s="$side" -v a="${p50[$side,$round]}" -v b="${p99[$side,$round]}" \
      -v f="${failed[$side,$round]}" -v t="${rps[$side,$round]}" \
      'BEGIN { printf "| %s | %-6s | %6.2f | %6.2f | %s | %s |\n", r, s, a / 1000, b / 1000, f, t }'
  done
  awk -v a="${p50[proxy,$round]}" -v b="${p50[direct,$round]}" -v c="${p99[proxy,$round]}" \
    -v d="${p99[direct,$round]}" -v e="${rps[proxy,$round]}" -v g="${rps[direct,$round]}" \
    'BEGIN { printf "| %s | added  | %+6.2f | %+6.2f |   | %.2fx |\n", '"$round"', (a - b) / 1000, (c - d) / 1000, e / g }'
done
