#!/usr/bin/env bash
# Writes the "Current numbers" section of docs/performance.md (between its `current:begin` and
# `current:end` marks) from the benches, with the date, commit, machine and load they ran at:
#
#   bash benches/report.sh                          instructions per request (benches/instructions.sh)
#                                                   and where they go by stage (benches/stages.sh)
#   REPORT_BASELINE=path/to/old/twiml-failover REPORT_BASELINE_NAME="main at abc1234" bash benches/report.sh
#                                                   also req/s against that build, in both orders
#                                                   (benches/run.sh, BENCH_SERVERS=twiml-failover)
#
# Run it on a quiet machine: the instruction counts do not depend on load, the req/s ratio does.
set -euo pipefail
cd "$(dirname "$0")/.."
doc=docs/performance.md
cargo build --release --quiet
export BIN=${CARGO_TARGET_DIR:-target}/release/twiml-failover
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
counts=$(bash benches/instructions.sh)
stages=$(bash benches/stages.sh 2>/dev/null)
ab=""
if [ -n "${REPORT_BASELINE:-}" ]; then
  ratio() { sed -n 's/.*twiml-failover\/baseline \([0-9.]*\)x.*/\1/p' target/bench-run/report.md | head -1; }
  export BENCH_SERVERS=twiml-failover BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-64} BENCH_SECONDS=${BENCH_SECONDS:-5}
  BENCH_BASELINE=$REPORT_BASELINE bash benches/run.sh >/dev/null 2>&1
  first=$(ratio)
  BENCH_BASELINE=$REPORT_BASELINE BENCH_BASELINE_LAST=1 bash benches/run.sh >/dev/null 2>&1
  last=$(ratio)
  mean=$(awk -v a="$first" -v b="$last" 'BEGIN {printf "%.2f", sqrt(a * b)}')
  ab="
Peak req/s against the baseline build (${REPORT_BASELINE_NAME:-given by REPORT_BASELINE}), \`BENCH_SERVERS=twiml-failover
BENCH_CONCURRENCY=$BENCH_CONCURRENCY BENCH_SECONDS=$BENCH_SECONDS BENCH_BASELINE=<baseline> bash benches/run.sh\`, then
the same with \`BENCH_BASELINE_LAST=1\`: ${first}x with the baseline run first, ${last}x with it run
last, **${mean}x** over both orders (geometric mean)."
fi

cat >"$tmp/section" <<EOF
<!-- current:begin (written by benches/report.sh; do not edit by hand) -->
Written $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)') on
$(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), load average $load_before before the run.
Command: \`bash benches/report.sh\`${REPORT_BASELINE:+ with \`REPORT_BASELINE\`}.

Instructions per signed SMS webhook (callgrind, deterministic; \`bash benches/instructions.sh\`):

\`\`\`text
$counts
\`\`\`

Where the primary path's instructions go, by stage of \`src/server/handler.rs\` (\`bash benches/stages.sh\`):

$stages
$ab
<!-- current:end -->
EOF
python3 - "$doc" "$tmp/section" <<'PY'
import sys
doc, section = sys.argv[1], open(sys.argv[2]).read()
text = open(doc).read()
begin, end = text.index("<!-- current:begin"), text.index("<!-- current:end -->") + len("<!-- current:end -->\n")
open(doc, "w").write(text[:begin] + section + text[end:])
PY
echo "wrote $doc"
