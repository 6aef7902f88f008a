#!/usr/bin/env bash
# Regenerate tests/vectors/sdk_signatures.json with the pinned Twilio SDKs.
#
#   tests/oracle/generate.sh           install the SDKs (if needed) and rewrite the vectors
#   tests/oracle/generate.sh --check   regenerate into a temp file and fail if it differs
#                                      from the committed tests/vectors/sdk_signatures.json
#
# Installs twilio-python (requirements.txt) into tests/oracle/.venv and twilio-node
# (package.json / package-lock.json) into tests/oracle/node_modules; both are gitignored.
# Needs python3 (with venv) and node/npm, and network access to PyPI and npm.
# The venv's python can also run blackbox.py: tests/oracle/.venv/bin/python tests/oracle/blackbox.py ...
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../vectors/sdk_signatures.json"
check=0
if [[ "${1:-}" == "--check" ]]; then check=1; fi

venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

(
  cd "$here"
  if [[ -f package-lock.json ]]; then
    npm ci --silent --no-audit --no-fund
  else
    npm install --silent --no-audit --no-fund
  fi
)

if [[ $check -eq 1 ]]; then
  tmp="$(mktemp)"
  trap 'rm -f "$tmp"' EXIT
  "$venv/bin/python" "$here/generate.py" --out "$tmp"
  if ! diff -u "$out" "$tmp" >/dev/null; then
    diff -u "$out" "$tmp" | head -50 >&2
    echo "generate.sh: tests/vectors/sdk_signatures.json is stale; run tests/oracle/generate.sh" >&2
    exit 1
  fi
  echo "generate.sh: tests/vectors/sdk_signatures.json is up to date"
else
  "$venv/bin/python" "$here/generate.py" --out "$out"
fi
