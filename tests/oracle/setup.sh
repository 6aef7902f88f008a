#!/usr/bin/env bash
# Installs the Python test oracles (twilio-python, pystache, chevron; pinned in requirements.txt) into
# tests/oracle/.venv.
#
#   tests/oracle/setup.sh && cargo test      the README's test command
#
# A venv is used because many systems refuse `pip install` outside one (PEP 668, "externally managed
# environment"). The tests that need twilio-python look for tests/oracle/.venv/bin/python first (or
# $PYTHON if set). Idempotent and quiet when everything is already installed. Needs python3 with the
# venv module and network access to PyPI the first time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
