#!/usr/bin/env bash
# How long a template reload holds up requests:   bash benches/reload_stall.sh
#
# Builds a valid template set of about BENCH_SET_MB MB (the shipped templates plus 240 KiB
# templates under primary/bulk/, each mostly a Jinja comment so `check` accepts it), starts
# `serve --watch false` on it (release build), sends genuinely signed `POST /sms` at a fixed rate
# (examples/loadgen.rs: latency from each request's intended send time, so a stalled server cannot
# hide behind a stalled client), and compares two runs of equal length: one quiet, one with a SIGHUP
# reload every 3 s. The difference in p99/p99.9/max is the stall reloads cause. With BENCH_BASELINE
# set to another twiml-failover binary, the same is done for it in the same run, side by side.
#
# Environment (all optional):
#   BENCH_SET_MB=50      size of the template set
#   BENCH_RATE=500       requests per second
#   BENCH_RELOADS=5      reloads in the reload run (one every 3 s)
#   BENCH_CONNECTIONS=16 keep-alive connections the rate is spread over
#   BENCH_BASELINE=PATH  also measure this binary (e.g. a build of the commit before the change)
# Results and server logs go to target/bench-reload/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/bench-reload
mkdir -p "$OUT"
SET_MB=${BENCH_SET_MB:-50}
RATE=${BENCH_RATE:-500}
RELOADS=${BENCH_RELOADS:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
PORT=18090
export TWILIO_AUTH_TOKEN=bench-token-not-a-secret-0123456789ab
say() { printf '%s\n' "$*" >&2; }

say "== building (release)"
cargo build --release --quiet --bin twiml-failover --example loadgen
CURRENT=$ROOT/target/release/twiml-failover
LOADGEN=$ROOT/target/release/examples/loadgen

say "== template set of ${SET_MB} MB in $OUT/set"
rm -rf "$OUT/set"
cp -r twiml-templates "$OUT/set"
mkdir -p "$OUT/set/primary/bulk"
python3 - "$OUT/set/primary/bulk" "$SET_MB" <<'PY'
import sys
folder, mb = sys.argv[1], int(sys.argv[2])
pad = "{# " + "padding " * 30700 + "#}\n"
for i in range(mb * 1024 * 1024 // len(pad)):
    with open(f"{folder}/t{i}.xml", "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n' + pad
                + f"<Response><Say>Bulk template {i}</Say></Response>\n")
PY
say "   $(du -sm "$OUT/set" | cut -f1) MB, $(find "$OUT/set" -name '*.xml' | wc -l) files"
"$CURRENT" check --templates "$OUT/set" --config twiml-failover.toml >/dev/null

BODY=$OUT/body.txt
PARAMS=(AccountSid=AC00000000000000000000000000000001 MessageSid=SM00000000000000000000000000000001
        From=+15005550006 To=+15005550001 Body=hello)
(IFS='&'; printf '%s' "${PARAMS[*]}" | sed 's/+/%2B/g') >"$BODY"
SIG=$("$CURRENT" sign --url "http://127.0.0.1:$PORT/sms" "${PARAMS[@]}")
SECONDS_PER_RUN=$((RELOADS * 3 + 2))

measure() { # name binary
  local name=$1 bin=$2 log=$OUT/$1.log
  "$bin" serve --listen 127.0.0.1:$PORT --templates "$OUT/set" --config twiml-failover.toml \
    --watch false 2>"$log" &
  local pid=$!
  for _ in $(seq 1 600); do
    grep -q listening "$log" && break
    sleep 0.1
  done
  grep -q listening "$log" || { say "$name did not start"; cat "$log" >&2; exit 1; }
  local quiet reload
  quiet=$("$LOADGEN" rate 127.0.0.1:$PORT "$BODY" "$SIG" "$RATE" "$SECONDS_PER_RUN" "$CONNECTIONS" | grep RESULT)
  "$LOADGEN" rate 127.0.0.1:$PORT "$BODY" "$SIG" "$RATE" "$SECONDS_PER_RUN" "$CONNECTIONS" \
    | grep RESULT >"$OUT/$name.reload" &
  local load=$!
  for _ in $(seq 1 "$RELOADS"); do
    sleep 2
    kill -HUP "$pid"
    sleep 1
  done
  wait "$load"
  reload=$(cat "$OUT/$name.reload")
  kill -TERM "$pid"; wait "$pid" || true
  local reloaded
  reloaded=$(grep -c "templates reloaded" "$log" || true)
  printf '%-10s quiet   %s\n' "$name" "${quiet#RESULT }"
  printf '%-10s reloads %s (reloads done: %s of %s)\n' "$name" "${reload#RESULT }" "$reloaded" "$RELOADS"
}

say "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "== ${RATE} req/s over ${CONNECTIONS} connections, ${SECONDS_PER_RUN} s per run"
if [ -n "${BENCH_BASELINE:-}" ]; then measure baseline "$BENCH_BASELINE"; fi
measure current "$CURRENT"
if [ -n "${BENCH_BASELINE:-}" ]; then measure baseline "$BENCH_BASELINE"; fi
