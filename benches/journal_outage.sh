#!/usr/bin/env bash
# PostgreSQL stopped under load, as a shipped deployment would live it: the server (the settings of
# the manifests: journal on PostgreSQL, --forward-to off here) takes signed SMS webhooks at a steady
# RATE while the database is stopped for OUTAGE seconds and started again. Reports: answers (all
# must be 200), the peak of twiml_failover_journal_buffered_events, the memory that peak cost
# (RSS), how long after the database was back the buffer was empty and journal_up was 1 again, and
# whether every acknowledged webhook is in the database (each has its own idempotency token).
#   bash benches/journal_outage.sh                       # RATE=50 OUTAGE=60
#   RATE=20 OUTAGE=600 BIN=target/release/twiml-failover bash benches/journal_outage.sh
#   SPILL=1 bash benches/journal_outage.sh   # SIGTERM the server at the end of the outage (it
#       spills what it holds to --journal-spill-dir), then start the database and a new server on the
#       same folder: reports the exit status, the spill file and how long taking it back took
#   SPILL=1 SHARED=1 bash benches/journal_outage.sh   # a second server runs on the same spill folder
#       (a folder every replica mounts: EFS, a ReadWriteMany volume, an NFS share) from the start;
#       the first is SIGTERMed at the end of the outage and spills, and the second, which keeps
#       running, takes the file back once the database is up again: no new server is started
# Starts its own throwaway PostgreSQL (.ci/postgres.sh) on loopback; runs as root or the user
# owning that server. Numbers in deploy/README.md ("What survives what") come from it.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${RATE:-50}
outage=${OUTAGE:-60}
before=${BEFORE:-10}
after=${AFTER:-30}
bin=${BIN:-target/debug/twiml-failover}
[ -x "$bin" ] || cargo build --bin twiml-failover >&2
eval "$(bash .ci/postgres.sh)"
trap 'kill "$server" 2>/dev/null || true; bash .ci/postgres.sh stop' EXIT
pgbin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_db() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# The server's own start options (port, socket folder, TLS), without -D (pg_ctl adds it).
opts=$(sed -e 's|^[^ ]*postgres ||' -e 's|"-D" "[^"]*" ||' "$TWIML_FAILOVER_PG_DATA/data/postmaster.opts")

export TWILIO_AUTH_TOKEN=bench-token-not-secret
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$TWIML_FAILOVER_PG_DATA/spill"
serve_args=(serve --listen "127.0.0.1:$port" --config twiml-failover.toml --watch false
  --journal "$TWIML_FAILOVER_TEST_POSTGRES" --journal-spill-dir "$TWIML_FAILOVER_PG_DATA/spill")
TWIML_FAILOVER_LOG=info "$bin" "${serve_args[@]}" 2>"$TWIML_FAILOVER_PG_DATA/serve.log" &
server=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
sig=$("$bin" sign --url "http://127.0.0.1:$port/sms" MessageSid=SM00000000000000000000000000000001 \
  From=+15550100001 To=+15550199999 "Body=outage test" AccountSid=AC00000000000000000000000000000001)

python3 - "$port" "$sig" "$rate" "$before" "$outage" "$after" "$server" "$pgbin" "$opts" "${SPILL:-0}" \
  "${SHARED:-0}" "$bin" "${serve_args[@]}" <<'EOF'
import http.client, json, os, signal, socket, subprocess, sys, threading, time, urllib.parse
port, sig, rate, before, outage, after, pid, pgbin, opts, spill, shared, *command = sys.argv[1:]
spill, shared = spill == "1", shared == "1"
rate, before, outage, after = int(rate), int(before), int(outage), int(after)
data = os.environ["TWIML_FAILOVER_PG_DATA"]
body = urllib.parse.urlencode([("MessageSid", "SM00000000000000000000000000000001"),
    ("From", "+15550100001"), ("To", "+15550199999"), ("Body", "outage test"),
    ("AccountSid", "AC00000000000000000000000000000001")])
def as_db(*cmd):
    if os.getuid() == 0:
        cmd = ("runuser", "-u", "postgres", "--") + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
def scrape():
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
    c.request("GET", "/metrics"); text = c.getresponse().read().decode(); c.close()
    return text
def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
other = None
if shared:
    # The second replica on the same spill folder, on a port of its own.
    s = socket.socket(); s.bind(("127.0.0.1", 0)); other_port = str(s.getsockname()[1]); s.close()
    other_command = [a if a != f"127.0.0.1:{port}" else f"127.0.0.1:{other_port}" for a in command]
    other = subprocess.Popen(other_command, stderr=open(f"{data}/serve-other.log", "w"))
    import atexit
    atexit.register(lambda: other.poll() is None and other.terminate())
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", int(other_port)), timeout=1).close(); break
        except OSError:
            time.sleep(0.1)
sent = ok = 0; statuses = {}; stop = False
def load():
    global sent, ok, stop
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    start = time.monotonic()
    while not stop:
        due = start + sent / rate
        time.sleep(max(0, due - time.monotonic()))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig,
                   "I-Twilio-Idempotency-Token": f"outage-{sent}"}
        try:
            conn.request("POST", "/sms", body, headers); r = conn.getresponse(); r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
            ok += r.status == 200
        except Exception as e:
            statuses[str(e)] = statuses.get(str(e), 0) + 1
            conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        sent += 1
t = threading.Thread(target=load); t.start()
time.sleep(before)
rss_before = rss_kib(); buffered_before = metric(scrape(), "twiml_failover_journal_buffered_events")
as_db(f"{pgbin}/pg_ctl", "-D", f"{data}/data", "-m", "fast", "-w", "stop")
down_at = time.monotonic(); peak = 0; peak_rss = rss_before; up_seen_zero = False
while time.monotonic() - down_at < outage:
    m = scrape(); b = metric(m, "twiml_failover_journal_buffered_events") or 0
    if metric(m, "twiml_failover_journal_up") == 0: up_seen_zero = True
    if b >= peak: peak, peak_rss = b, rss_kib()
    time.sleep(0.5)
spilled = None
if spill:
    stop = True; t.join()
    os.kill(int(pid), signal.SIGTERM)
    # The shell started it and reaps it: wait until it is gone (or a zombie).
    while True:
        try:
            if open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                break
        except OSError:
            break
        time.sleep(0.1)
    files = [f for f in os.listdir(f"{data}/spill") if f.startswith("spill-")]
    spilled = {"files": len(files), "bytes": sum(os.path.getsize(f"{data}/spill/{f}") for f in files),
               "log": [l for l in open(f"{data}/serve.log") if "spilled" in l][-1:]}
as_db(f"{pgbin}/pg_ctl", "-D", f"{data}/data", "-w", "-l", f"{data}/log", "-o", opts, "start")
if spill:
    back_at = time.monotonic()
    if shared:
        # No new server: the one still running takes the file back.
        new, port = other, other_port
    else:
        new = subprocess.Popen(command, stderr=open(f"{data}/serve2.log", "w"))
    pid = str(new.pid)
    while True:
        try:
            scrape(); break
        except OSError:
            time.sleep(0.05)
    while any(f.startswith("spill-") for f in os.listdir(f"{data}/spill")):
        time.sleep(0.05)
    spilled["taken_back_s_after_db_back"] = round(time.monotonic() - back_at, 2)
    spilled["taken_back_by"] = "the other server, running since before the outage" if shared else "a new server"
back_at = time.monotonic(); drained = up_again = None
while time.monotonic() - back_at < after:
    m = scrape()
    if drained is None and metric(m, "twiml_failover_journal_buffered_events") == 0:
        drained = time.monotonic() - back_at
    if up_again is None and metric(m, "twiml_failover_journal_up") == 1:
        up_again = time.monotonic() - back_at
    if drained is not None and up_again is not None: break
    time.sleep(0.2)
stop = True; t.join()
time.sleep(3)
m = scrape()
if spill:
    new.send_signal(signal.SIGTERM); new.wait()
url = os.environ["TWIML_FAILOVER_TEST_POSTGRES"]
rows = int(subprocess.run(["psql", url, "-Atc", "SELECT count(*) FROM twiml_failover_events WHERE idempotency_key LIKE 'outage-%'"],
    check=True, capture_output=True, text=True).stdout.strip())
per_event = (peak_rss - rss_before) * 1024 / peak if peak else 0
print(json.dumps({
    "rate_per_s": rate, "outage_s": outage, "sent": sent, "answered_200": ok, "statuses": statuses,
    "buffered_peak": peak, "journal_up_went_0": up_seen_zero,
    "rss_before_kib": rss_before, "rss_at_peak_kib": peak_rss, "bytes_per_buffered_event": round(per_event),
    "drained_s_after_db_back": None if drained is None else round(drained, 2),
    "journal_up_1_s_after_db_back": None if up_again is None else round(up_again, 2),
    "rows_in_db": rows, "lost": ok - rows,
    "dropped_total": metric(m, "twiml_failover_journal_dropped_total"),
    "spilled_at_sigterm": spilled,
}, indent=1))
EOF
