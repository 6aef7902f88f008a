#!/usr/bin/env bash
# The cost of journaling: the release server with and without --journal, side by side, under wrk
# (signed SMS POSTs, each with its own I-Twilio-Idempotency-Token so every request is a new journal
# row; the token is not part of the signature). Server pinned to CPU 0, wrk to CPU 1.
#   bash benches/journal.sh                   # sqlite journal on $BENCH_DIR (default: a temp dir)
#   JOURNAL_URL=postgres://... bash benches/journal.sh   # also measure that journal
# Prints req/s and p99 for each configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin twiml-failover >&2
bin=target/release/twiml-failover
dir=${BENCH_DIR:-$(mktemp -d)}
connections=${CONNECTIONS:-64}
seconds=${SECONDS_PER_RUN:-10}
export TWILIO_AUTH_TOKEN=bench-token-not-secret
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port/sms"
params=(MessageSid=SM00000000000000000000000000000001 From=+15550100001 To=+15550199999
  "Body=benchmark message" AccountSid=AC00000000000000000000000000000001)
sig=$($bin sign --url "$url" "${params[@]}")
body=$(printf '%s&' "${params[@]}" | sed 's/ /+/g; s/+1555/%2B1555/g; s/&$//')
cat > "$dir/sms.lua" <<LUA
local n = 0
local run = tostring(os.time()) .. "-" .. tostring(math.random(1000000))
wrk.method = "POST"
wrk.body = "$body"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["X-Twilio-Signature"] = "$sig"
request = function()
  n = n + 1
  wrk.headers["I-Twilio-Idempotency-Token"] = run .. "-" .. n
  return wrk.format(nil, "/sms")
end
LUA

run() {
  local label=$1; shift
  taskset -c 0 "$bin" serve --listen "127.0.0.1:$port" --config twiml-failover.toml \
    --watch false "$@" 2>"$dir/$label.log" &
  local pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
  curl -fsS "$url" -H "X-Twilio-Signature: $sig" -H "I-Twilio-Idempotency-Token: probe-$label" \
    --data "$body" | grep -q "<Message>" || { echo "probe failed"; cat "$dir/$label.log"; kill "$pid"; exit 1; }
  local out
  out=$(TWIML_FAILOVER_LOG=warn taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" --latency \
    -s "$dir/sms.lua" "$url")
  local rps p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  local journal
  journal=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '
    /^twiml_failover_journal_writes_total/ { printf "%s ", $0 }
    /^twiml_failover_journal_commit_events_sum/ { sum = $2 }
    /^twiml_failover_journal_commit_events_count/ { n = $2 }
    END { if (n > 0) printf "commits %d, %.1f events each", n, sum / n }')
  printf '%-28s %10s req/s   p99 %8s   non-2xx %s   %s\n' "$label" "$rps" "$p99" "${non2xx:-0}" "$journal"
  kill -TERM "$pid"; wait "$pid" || true
}

echo "wrk -t1 -c$connections -d${seconds}s, server on CPU 0, wrk on CPU 1 ($(nproc) CPUs)"
run "no journal"
rm -f "$dir"/bench.db*
run "sqlite journal" --journal "sqlite://$dir/bench.db"
if [ -n "${JOURNAL_URL:-}" ]; then
  run "postgres journal" --journal "$JOURNAL_URL"
fi
run "no journal (again)"
