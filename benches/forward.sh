#!/usr/bin/env bash
# How fast the forwarder drains a backlog: journal events with the forward target down, then start
# a target (another twiml-failover, which checks the forwarded signatures and answers 200) and time
# until `journal stats` shows nothing undelivered.
#   bash benches/forward.sh                      # 1000 conversations, 5 s of load
#   CONVERSATIONS=1 bash benches/forward.sh      # one conversation: strictly sequential delivery
#   JOURNAL_URL=postgres://... bash benches/forward.sh
#   BIN=/tmp/twiml-failover-main bash benches/forward.sh   # a binary built elsewhere (say main's)
# Prints one RESULT line: events, conversations, seconds to drain, events/s, the forwarder's CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --bin twiml-failover >&2
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/twiml-failover
fi
dir=$(mktemp -d)
conversations=${CONVERSATIONS:-1000}
load_seconds=${LOAD_SECONDS:-5}
journal=${JOURNAL_URL:-sqlite://$dir/journal.db}
export TWILIO_AUTH_TOKEN=bench-token-not-secret
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
target_port=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

# One signed body per conversation (the signature covers the parameters, so wrk cannot vary them);
# each request adds its own I-Twilio-Idempotency-Token, so every request is a new event.
python3 - "$conversations" "http://127.0.0.1:$port/sms" > "$dir/load.lua" <<'PY'
import base64, hashlib, hmac, os, sys, urllib.parse
n, url = int(sys.argv[1]), sys.argv[2]
token = os.environ["TWILIO_AUTH_TOKEN"].encode()
print("local bodies, sigs = {}, {}")
for i in range(n):
    params = [("AccountSid", "AC00000000000000000000000000000001"),
              ("MessageSid", "SM%032d" % i), ("From", "+15550100001"), ("Body", "bench")]
    s = url + "".join(k + v for k, v in sorted(params))
    sig = base64.b64encode(hmac.new(token, s.encode(), hashlib.sha1).digest()).decode()
    print('bodies[%d] = "%s"; sigs[%d] = "%s"' % (i + 1, urllib.parse.urlencode(params), i + 1, sig))
print('''local n, run = 0, tostring(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
request = function()
  n = n + 1
  local i = (n %% %d) + 1
  wrk.headers["X-Twilio-Signature"] = sigs[i]
  wrk.headers["I-Twilio-Idempotency-Token"] = run .. "-" .. n
  return wrk.format(nil, "/sms", nil, bodies[i])
end''' % n)
PY

serve() {
  "$bin" serve --listen "127.0.0.1:$1" --config twiml-failover.toml --watch false "${@:2}" \
    2>>"$dir/server.log" &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.1; done
  echo "server on $1 did not start" >&2; exit 1
}
undelivered() { "$bin" journal stats --journal "$journal" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["undelivered"])'; }

# 1. Load with the target down: everything piles up in the journal.
serve "$port" --role fallback --journal "$journal" --forward-to "http://127.0.0.1:$target_port/sms"
wrk -t1 -c8 -d"${load_seconds}s" -s "$dir/load.lua" "http://127.0.0.1:$port" >&2
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
events=$(undelivered)

# 2. Target up, forwarder restarted: time the drain.
serve "$target_port" --role primary
start=$(date +%s.%N)
serve "$port" --role fallback --journal "$journal" --forward-to "http://127.0.0.1:$target_port/sms"
while [ "$(undelivered)" != 0 ]; do sleep 0.2; done
end=$(date +%s.%N)
# CPU the forwarding process used (start-up included): less swayed by a busy machine than the rate.
forwarder_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/${pids[-1]}/stat")
accepted=$(curl -s "http://127.0.0.1:$target_port/metrics" | awk -F' ' '/^twiml_failover_requests_total\{route="webhook",status="200"\}/{print $2}')
python3 -c "import sys; e, c, s, a = int(sys.argv[1]), sys.argv[2], float(sys.argv[4]) - float(sys.argv[3]), sys.argv[5]; print(f'RESULT events={e} conversations={c} drain_s={s:.1f} rate={e / s:.0f}/s target_accepted={a} forwarder_cpu_s={sys.argv[6]} cpu_us_per_event={float(sys.argv[6]) * 1e6 / e:.0f}')" \
  "$events" "$conversations" "$start" "$end" "${accepted:-0}" "$forwarder_cpu"
