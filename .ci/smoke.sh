#!/usr/bin/env bash
# The manifest-driven smoke test (tests/manifests.rs): every shipped deployment's container run
# with its own command, arguments and environment, test secrets substituted, as its unprivileged
# user on a read-only root, against a throwaway PostgreSQL; signed webhooks answered, journaled,
# forwarded; probes and the scrape path answering; each monitor manifest reading a fake account and
# probing a loopback fallback. Runs as root (mount namespace, chroot,
# setpriv) inside a network namespace of its own (loopback only: the manifests' port 8080 is free
# and nothing leaves the machine). Uses the tools .ci/deploy-checks.sh installs (kubectl, PyYAML,
# cfn-lint), running it first when they are missing.
#   bash .ci/smoke.sh            # every deployment: the six `serve` ones and the three monitors
#   bash .ci/smoke.sh monitor    # only the tests whose name holds `monitor` (libtest's filter)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "smoke: needs root (mount namespace, chroot, setpriv); CI runs it as root" >&2
  exit 1
fi
cache="${DEPLOY_CHECKS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/twiml-failover/deploy-checks}"
if [ ! -x "$cache/venv/bin/python" ]; then
  bash .ci/deploy-checks.sh >&2
fi
kubectl="$(command -v kubectl || true)"
if [ -z "$kubectl" ] || ! "$kubectl" version --client 2>/dev/null | grep -q 'Kustomize Version: v5\.'; then
  kubectl="$cache/kubectl-v33/kubectl"
  [ -x "$kubectl" ] || bash .ci/deploy-checks.sh >&2
fi
if ! command -v ip >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null
fi
# Built here; run directly inside the namespace, where cargo would rebuild the crate for the new
# server's URL (build.rs watches TWIML_FAILOVER_TEST_POSTGRES).
test_binary=$(cargo test --no-run --test manifests --message-format=json \
  | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "manifests" and m.get("executable"):
        print(m["executable"])')
export KUBECTL="$kubectl" SMOKE_PYTHON="$cache/venv/bin/python" SMOKE_TEST_BINARY="$test_binary"
# shellcheck disable=SC2016 # expanded by the bash inside the namespace
exec unshare --net -- bash -c '
  set -euo pipefail
  ip link set lo up
  eval "$(bash .ci/postgres.sh)"
  trap "bash .ci/postgres.sh stop" EXIT
  "$SMOKE_TEST_BINARY" --ignored --test-threads=1 --nocapture "$@"
' smoke "$@"
