#!/usr/bin/env bash
# Proves the container's claim without a container engine: the musl build is fully static and
# answers a signed request when run with an empty environment from a directory holding only the
# binary, the templates and the config (no libc, no loader, nothing else on disk it could use).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add x86_64-unknown-linux-musl >/dev/null
if ! command -v x86_64-linux-musl-gcc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq musl-tools >/dev/null
fi
cargo build --release --target x86_64-unknown-linux-musl --bin twiml-failover
bin=target/x86_64-unknown-linux-musl/release/twiml-failover

echo "== static?"
# Not `tee /dev/stderr`: when stderr is a file, tee reopens it with O_TRUNC and wipes the CI log.
kind=$(file "$bin")
echo "$kind"
grep -Eq "static(-pie)? linked|statically linked" <<<"$kind"
if ldd "$bin" >/dev/null 2>&1 && ! ldd "$bin" 2>&1 | grep -q "statically linked"; then
  echo "dynamic dependencies found:"; ldd "$bin"; exit 1
fi
echo "binary size: $(stat -c %s "$bin") bytes"

root=$(mktemp -d)
# Only ever signal our own server: `kill 0` would signal the whole process group, CI included.
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$root"' EXIT
cp "$bin" "$root/twiml-failover"
cp -r twiml-templates "$root/twiml-templates"
cp twiml-failover.toml "$root/twiml-failover.toml"
token="static-test-token-$(date +%s)"
printf '%s' "$token" > "$root/token"
port=$((20000 + RANDOM % 20000))

(cd "$root" && exec env -i ./twiml-failover serve --listen "127.0.0.1:$port" \
  --config twiml-failover.toml --auth-token-file token --log-format json 2> "$root/log") &
pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.05
done
sig=$(cd "$root" && env -i TWILIO_AUTH_TOKEN="$token" ./twiml-failover sign \
  --url "http://127.0.0.1:$port/sms" MessageSid=SM1 From=+15550100 "Body=static hello")
reply=$(curl -sS -i "http://127.0.0.1:$port/sms" -H "X-Twilio-Signature: $sig" \
  --data-urlencode MessageSid=SM1 --data-urlencode From=+15550100 --data-urlencode "Body=static hello")
echo "$reply" | head -12
echo "$reply" | grep -q "^HTTP/1.1 200" || { cat "$root/log"; exit 1; }
echo "$reply" | grep -q "static hello"
kill -TERM "$pid"; wait "$pid"; pid=
echo "static binary: ok (exit 0 after SIGTERM)"
