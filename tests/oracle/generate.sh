#!/usr/bin/env bash
# Regenerate what the pinned Twilio SDKs produce: tests/vectors/sdk_signatures.json (signature
# vectors), src/twilio/schema.json (the TwiML schema) and tests/corpus/twiml/cases.jsonl (the
# TwiML verdict corpus; see twiml/README.md).
#
#   tests/oracle/generate.sh           install the SDKs (if needed) and rewrite all three
#   tests/oracle/generate.sh --check   regenerate into temp files and fail if any differs
#                                      from the committed one
#
# Installs twilio-python (requirements.txt) into tests/oracle/.venv and twilio-node plus the TypeScript
# parser that reads its declarations (package.json / package-lock.json) into tests/oracle/node_modules;
# both are gitignored.
# Needs python3 (with venv) and node/npm, and network access to PyPI and npm.
# The venv's python can also run blackbox.py: tests/oracle/.venv/bin/python tests/oracle/blackbox.py ...
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../vectors/sdk_signatures.json"
check=0
if [[ "${1:-}" == "--check" ]]; then check=1; fi

venv="$here/.venv"
bash "$here/setup.sh"

(
  cd "$here"
  if [[ -f package-lock.json ]]; then
    npm ci --silent --no-audit --no-fund
  else
    npm install --silent --no-audit --no-fund
  fi
)

schema="$here/../../src/twilio/schema.json"
corpus="$here/../corpus/twiml/cases.jsonl"
if [[ $check -eq 1 ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$venv/bin/python" "$here/generate.py" --out "$tmp/vectors.json"
  "$venv/bin/python" "$here/twiml/generate.py" --schema "$tmp/schema.json" --corpus "$tmp/cases.jsonl"
  stale=0
  for pair in "$out:$tmp/vectors.json" "$schema:$tmp/schema.json" "$corpus:$tmp/cases.jsonl"; do
    committed="${pair%%:*}" fresh="${pair#*:}"
    if ! diff -u "$committed" "$fresh" >/dev/null 2>&1; then
      diff -u "$committed" "$fresh" 2>&1 | head -50 >&2
      echo "generate.sh: ${committed#"$here/"} is stale; run tests/oracle/generate.sh" >&2
      stale=1
    fi
  done
  [[ $stale -eq 0 ]] || exit 1
  echo "generate.sh: signature vectors, TwiML schema and TwiML corpus are up to date"
else
  "$venv/bin/python" "$here/generate.py" --out "$out"
  mkdir -p "$(dirname "$corpus")"
  "$venv/bin/python" "$here/twiml/generate.py" --schema "$schema" --corpus "$corpus"
fi
