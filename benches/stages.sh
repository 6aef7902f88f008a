#!/usr/bin/env bash
# Where one signed webhook's instructions go, by stage of the request path (src/server/handler.rs),
# counted by callgrind as benches/instructions.sh counts (release build, shipped templates and
# config, info log, 2,000 and 6,000 keep-alive requests; the difference over 4,000 is one request).
#
#   bash benches/stages.sh              print the table (markdown) for the primary path
#   INSTRUCTIONS_PATHS=fallback bash benches/stages.sh
#
# Each row is a stage function's inclusive cost (callgrind_annotate --inclusive=yes); "the rest"
# rows are what their parent costs beyond the rows above them. Environment as benches/instructions.sh
# (BIN, INSTRUCTIONS_PORT); needs valgrind (callgrind_annotate) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export INSTRUCTIONS_PROFILE_DIR
INSTRUCTIONS_PROFILE_DIR=$(mktemp -d)
trap 'rm -rf "$INSTRUCTIONS_PROFILE_DIR"' EXIT
path=${INSTRUCTIONS_PATHS:-primary}
# One measure: the table reads the profiles of the run it made.
INSTRUCTIONS_PATHS=$path INSTRUCTIONS_REPEAT=1 bash benches/instructions.sh >&2
for n in 2000 6000; do
  callgrind_annotate --inclusive=yes --threshold=100 "$INSTRUCTIONS_PROFILE_DIR/$path-$n.out" \
    >"$INSTRUCTIONS_PROFILE_DIR/$n.txt"
done
python3 - "$INSTRUCTIONS_PROFILE_DIR/2000.txt" "$INSTRUCTIONS_PROFILE_DIR/6000.txt" <<'PY'
import re, sys

def costs(path):
    """Inclusive instructions by function name (the first entry of a name wins: the largest)."""
    out = {}
    for line in open(path):
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S*?:(.*?) \[", line)
        if m:
            out.setdefault(m.group(2), int(m.group(1).replace(",", "")))
    return out

a, b = costs(sys.argv[1]), costs(sys.argv[2])
total = lambda c: max(c.values())
def per(name):
    return (b.get(name, 0) - a.get(name, 0)) / 4000

h = "twiml_failover::server::handler::"
whole = (total(b) - total(a)) / 4000
service = per("twiml_failover::server::connection::service::{{closure}}::{{closure}}")
webhook = per(h + "webhook::{{closure}}::{{closure}}")
stages = [
    ("decode: the signed URL and the form", per(h + "decode_request")),
    ("verify: the signature (HMAC-SHA1)", per(h + "verify")),
    ("answer: the template rendered and its TwiML checked", per(h + "render")),
]
respond = per(h + "respond")
log = per("tracing_core::event::Event::dispatch")
metrics = per("twiml_failover::metrics::Metrics::request")
rows = [("accept: hyper and tokio (read, parse the head, write, wake)", whole - service)]
rows.append(("limits: the body read within its budget, the permit; moves between stages",
             webhook - sum(c for _, c in stages)))
rows += stages
rows.append(("respond: the log line (tracing-subscriber's text format)", log))
rows.append(("respond: the request metrics", metrics))
rows.append(("respond and route: the rest", service - webhook - log - metrics))
print("| stage | instructions per request |")
print("|---|---|")
for name, cost in rows:
    print(f"| {name} | {cost / 1000:.1f} k |")
print(f"| **whole request** | **{whole / 1000:.1f} k** |")
PY
