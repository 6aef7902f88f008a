#!/usr/bin/env python3
"""Consistency checks on the deploy files that schema linters cannot see. Run by .ci/deploy-checks.sh.

  checks.py kubernetes ROLE RENDERED.yaml    an overlay's `kubectl kustomize` output
  checks.py cloudrun SERVICE.yaml POD.yaml   checks the Knative service; writes its containers as a
                                             Pod for kubernetes-validate
  checks.py cloudrun-monitoring FOLDER       Cloud Run's log-based metrics and alert policies
  checks.py cloudformation TEMPLATE.yaml     the AWS fallback stack (needs cfn-lint installed)
  checks.py rule-spec PROMETHEUSRULE.yaml OUT  writes the PrometheusRule's spec as a rule file
  checks.py monitor RENDERED.yaml            deploy/kubernetes/monitor's `kubectl kustomize` output
  checks.py cloudrun-monitor SERVICE.yaml POD.yaml  the monitor's Knative service; its containers
                                             as a Pod for kubernetes-validate
  checks.py monitor-alarms PROMETHEUSRULE.yaml AWS_MONITOR.yaml CLOUDRUN_MONITORING MONITOR_SERVICE.yaml
                                             the fallback-probe alert's rounds in a row on every
                                             platform, held to the monitor's default interval
  checks.py grafana DASHBOARD.json OUT       checks the dashboard's shape; writes its queries as
                                             recording rules, for `promtool check rules`
  checks.py shipped KIND PATH                what a deployment runs (kubernetes OVERLAY_DIR, aws
                                             TEMPLATE, cloudrun SERVICE): command, environment,
                                             volumes, user, probes, as JSON for tests/manifests.rs

Needs PyYAML (cfn-lint brings it). Prints one line per check; exits 1 on the first failure.
"""

import os
import sys
import urllib.parse

import yaml

# The server's own limits (src/config.rs defaults): no request outlives these.
REQUEST_TIMEOUT_S = 10
TWILIO_HARD_LIMIT_S = 15
SHUTDOWN_MARGIN_S = 5
LAME_DUCK_S = 2

# After SIGTERM the server is a lame duck, then stops listening (src/server/listener.rs: at most
# 2 s, when nothing refuses new handshakes; 0.2 s after the refusal otherwise), drains (the drain
# timeout, then 1 s for connections still open: src/server/mod.rs), then gives the journal one
# last write (src/service.rs finish_journal: up to 8 s when its store is down).
LISTENER_CLOSE_S = 2
FORCED_CLOSE_S = 1
JOURNAL_EXIT_S = 8
# The journal's last try at exit waits 3 s for a store that does not answer (JOURNAL_EXIT_WAIT) and
# 0.5 s for its answer (the writer's REPLY_GRACE); the spill file is then written: 100,000 events,
# 46.5 MB, in 93 ms (release build, local disk; 0.98 s in a debug build), so 1 s leaves a network file
# system's throughput room.
JOURNAL_SPILLED_BY_S = 4.5
# tests/restart.rs: clients that follow /readyz at the Kubernetes probe's period and failure
# threshold lose nothing and are never refused when the lame duck covers period x threshold plus
# this (with a 1 s lame duck under a 2 s period x threshold they met the closed listener).
PROBE_MARGIN_S = 1


def after_sigterm(env_value_of):
    """The longest the server can take from SIGTERM to exit with a container's settings, and how
    that adds up. `env_value_of(name)` is the variable's value, None when it is not set."""
    lame = float(env_value_of("TWIML_FAILOVER_LAME_DUCK") or LAME_DUCK_S)
    drain = float(env_value_of("TWIML_FAILOVER_DRAIN_TIMEOUT") or "nan")
    # Set from a Secret (valueFrom) counts too: the name is what matters. The journal's last write
    # waits up to 8 s only for events its store did not take, and only a spill folder can save
    # those at exit; without one they are lost however long it waits (with the store up the write
    # takes milliseconds), so the exit is not held for it (Cloud Run: deploy/cloudrun/service.yaml).
    has_journal = env_value_of("TWIML_FAILOVER_JOURNAL") is not None
    spills = env_value_of("TWIML_FAILOVER_JOURNAL_SPILL_DIR") is not None
    journal = JOURNAL_EXIT_S if has_journal and spills else 0
    total = lame + LISTENER_CLOSE_S + drain + FORCED_CLOSE_S + journal
    parts = f"lame duck {lame:g} + close {LISTENER_CLOSE_S} + drain {drain:g} + {FORCED_CLOSE_S}"
    if journal:
        parts += f" + journal {journal}"
    elif has_journal:
        parts += " (journal without a spill folder: nothing more to save at exit)"
    else:
        parts += " (no journal)"
    return total, f"{total:g} s after SIGTERM ({parts})"

# Memory (benches/memory.sh: release build, 1000 connections per state; docs/production.md "Memory
# budget"): the process's own base, the worst state one connection can be held in, and the body
# budget, which bounds the bodies being read between all connections. The budget of a deployment
# is base + max connections x worst connection + body budget x 2 (a body being read costs 1.85x
# its Content-Length: hyper's read buffer and the copy), and must fit its memory limit.
MEMORY_BASE_MIB = 16
MEMORY_WORST_CONNECTION_KIB = 48
# With TLS the server also speaks HTTP/2: a connection with all 16 streams holding slow bodies.
MEMORY_WORST_TLS_CONNECTION_KIB = 104
DEFAULT_MAX_CONNECTIONS = 2048
DEFAULT_BODY_BUFFER_BYTES = 16 * 1024 * 1024
# With a journal, a database outage holds up to 100,000 events in memory (src/journal/writer.rs),
# each costing 1,198 bytes of RSS (benches/journal_outage.sh: 2,996 events, +3.5 MiB).
JOURNAL_BUFFERED_EVENTS = 100_000
JOURNAL_BYTES_PER_EVENT = 1198


def mib(quantity):
    """A Kubernetes memory quantity (128Mi, 1Gi, 512M) in MiB."""
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1000 / 2**20, "M": 10**6 / 2**20, "G": 10**9 / 2**20}
    for unit, factor in units.items():
        if str(quantity).endswith(unit):
            return float(str(quantity)[: -len(unit)]) * factor
    return float(quantity) / 2**20


def memory_budget_mib(env):
    """What the server may use at most with these environment settings (flags' env twins)."""
    conns = int(env.get("TWIML_FAILOVER_MAX_CONNECTIONS") or DEFAULT_MAX_CONNECTIONS)
    body = int(env.get("TWIML_FAILOVER_BODY_BUFFER_BYTES") or DEFAULT_BODY_BUFFER_BYTES)
    worst = MEMORY_WORST_TLS_CONNECTION_KIB if env.get("TWIML_FAILOVER_TLS_CERT") else MEMORY_WORST_CONNECTION_KIB
    journal = JOURNAL_BUFFERED_EVENTS * JOURNAL_BYTES_PER_EVENT if env.get("TWIML_FAILOVER_JOURNAL") else 0
    return MEMORY_BASE_MIB + conns * worst / 1024 + 2 * body / 2**20 + journal / 2**20


def check_memory(where, env, limit_mib):
    budget = memory_budget_mib(env)
    check(budget <= limit_mib,
          f"{where}: memory budget {budget:.0f} MiB (base {MEMORY_BASE_MIB} + max connections x worst "
          f"connection + 2 x body budget + the journal's outage buffer) <= memory limit {limit_mib:.0f} MiB")


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)
    print(f"  ok: {message}")


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container, name):
    entry = env_of(container).get(name)
    return None if entry is None else entry.get("value")


def env_lookup(container):
    """name -> its value ("" when it comes from a Secret or ConfigMap), None when it is not set."""
    env = env_of(container)
    return lambda name: None if name not in env else env[name].get("value", "")


def http_path(probe):
    return (probe or {}).get("httpGet", {}).get("path")


def kubernetes(role, path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in ("Namespace", "ServiceAccount", "Deployment", "Service", "Ingress",
                 "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        check(len(by_kind.get(kind, [])) == 1, f"{role}: exactly one {kind}")
    policies = {d["metadata"]["name"]: d["spec"] for d in by_kind.get("NetworkPolicy", [])}
    clusters = by_kind.get("Cluster", [])
    expected_policies = {"twiml-failover", "twiml-failover-egress"} | (
        {"twiml-failover-egress-database"} if clusters else set())
    check(set(policies) == expected_policies, f"{role}: NetworkPolicies {sorted(expected_policies)}")
    check(len(by_kind.get("ConfigMap", [])) == 3, f"{role}: three ConfigMaps (two template sets, config)")
    check("Secret" not in by_kind, f"{role}: no Secret in the manifests (created by hand or by the operator)")

    ns = by_kind["Namespace"][0]
    check(ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted",
          f"{role}: namespace enforces Pod Security 'restricted'")
    check(all(d["metadata"].get("namespace") == ns["metadata"]["name"] for d in docs if d["kind"] != "Namespace"),
          f"{role}: every object is in namespace {ns['metadata']['name']}")

    deploy = by_kind["Deployment"][0]
    pod = deploy["spec"]["template"]
    spec = pod["spec"]
    containers = spec["containers"]
    check(len(containers) == 1 and containers[0]["name"] == "twiml-failover", f"{role}: one container")
    c = containers[0]
    check(c.get("args") == ["serve"], f"{role}: runs `twiml-failover serve`")
    check(env_value(c, "TWIML_FAILOVER_ROLE") == role, f"{role}: TWIML_FAILOVER_ROLE={role}")
    check(env_value(c, "TWIML_FAILOVER_LISTEN") == "0.0.0.0:8080", f"{role}: listens on 0.0.0.0:8080")
    check(any(p.get("containerPort") == 8080 for p in c.get("ports", [])), f"{role}: container port 8080")
    public = env_value(c, "TWIML_FAILOVER_PUBLIC_URL") or ""
    parsed = urllib.parse.urlsplit(public)
    check(parsed.scheme == "https" and parsed.netloc and not parsed.query and not parsed.fragment
          and not public.endswith("/"),
          f"{role}: TWIML_FAILOVER_PUBLIC_URL {public!r} is https://host[/prefix] without slash, query, fragment")

    # Shutdown arithmetic: the lame duck covers the readiness probe's detection, the drain covers
    # the longest request, and preStop + everything after SIGTERM + margin fits in the grace period.
    grace = spec.get("terminationGracePeriodSeconds", 30)
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    check(isinstance(sleep, int) and sleep > 0, f"{role}: preStop uses the native sleep action ({sleep} s)")
    drain = float(env_value(c, "TWIML_FAILOVER_DRAIN_TIMEOUT") or "nan")
    lame = float(env_value(c, "TWIML_FAILOVER_LAME_DUCK") or LAME_DUCK_S)
    check(drain >= REQUEST_TIMEOUT_S, f"{role}: drain timeout {drain:g} s >= request timeout {REQUEST_TIMEOUT_S} s")
    readiness = c.get("readinessProbe") or {}
    period, failures = readiness.get("periodSeconds", 10), readiness.get("failureThreshold", 3)
    check(lame >= period * failures + PROBE_MARGIN_S,
          f"{role}: lame duck {lame:g} s >= readiness period {period} s x failureThreshold {failures}"
          f" + {PROBE_MARGIN_S} s (tests/restart.rs)")
    after, how = after_sigterm(env_lookup(c))
    check(sleep + after + SHUTDOWN_MARGIN_S <= grace,
          f"{role}: preStop {sleep} s + {how} + margin {SHUTDOWN_MARGIN_S} s <= grace period {grace} s")

    check(http_path(c.get("readinessProbe")) == "/readyz", f"{role}: readiness probe on /readyz")
    check(http_path(c.get("livenessProbe")) == "/healthz", f"{role}: liveness probe on /healthz")
    res = c.get("resources", {})
    check(all(k in res.get("requests", {}) for k in ("cpu", "memory")) and "memory" in res.get("limits", {}),
          f"{role}: cpu/memory requests and a memory limit")
    check_memory(role, {k: env_value(c, k) for k in env_of(c)}, mib(res["limits"]["memory"]))
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot") is True, f"{role}: runAsNonRoot")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{role}: seccomp RuntimeDefault")
    check(csc.get("readOnlyRootFilesystem") is True, f"{role}: read-only root filesystem")
    check(csc.get("allowPrivilegeEscalation") is False, f"{role}: no privilege escalation")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{role}: all capabilities dropped")
    check(spec.get("automountServiceAccountToken") is False, f"{role}: no service account token mounted")
    check("replicas" not in deploy["spec"], f"{role}: replicas left to the HPA")

    # Volumes: the ConfigMaps exist under their hashed names, and the mounts match the env paths.
    configmaps = {d["metadata"]["name"]: d for d in by_kind["ConfigMap"]}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    for vol in ("templates-primary", "templates-fallback", "config"):
        name = volumes.get(vol, {}).get("configMap", {}).get("name")
        check(name in configmaps, f"{role}: volume {vol} uses ConfigMap {name}, which the overlay generates")
    templates = env_value(c, "TWIML_FAILOVER_TEMPLATES")
    for set_name in ("primary", "fallback"):
        check(mounts.get(f"templates-{set_name}") == f"{templates}/{set_name}",
              f"{role}: {set_name} templates mounted at {templates}/{set_name}")
        data = configmaps[volumes[f"templates-{set_name}"]["configMap"]["name"]].get("data", {})
        check({"voice.xml", "sms.xml"} <= set(data), f"{role}: {set_name} set has voice.xml and sms.xml")
    config_path = env_value(c, "TWIML_FAILOVER_CONFIG") or ""
    config_cm = configmaps[volumes["config"]["configMap"]["name"]]
    check(config_path.rsplit("/", 1)[0] == mounts.get("config")
          and config_path.rsplit("/", 1)[1] in config_cm.get("data", {}),
          f"{role}: TWIML_FAILOVER_CONFIG {config_path} is in the config ConfigMap")
    token_vol = volumes.get("twilio-token", {}).get("secret", {})
    token_file = env_value(c, "TWIML_FAILOVER_AUTH_TOKEN_FILE") or ""
    check(token_vol.get("secretName") == "twiml-failover-twilio"
          and any(i.get("key") == "auth-token" for i in token_vol.get("items", []))
          and token_file == mounts.get("twilio-token", "") + "/auth-token",
          f"{role}: auth token read from Secret twiml-failover-twilio key auth-token at {token_file}")
    check("TWILIO_AUTH_TOKEN" not in env_of(c), f"{role}: the token is not in the environment")
    secondary = env_of(c).get("TWILIO_SECONDARY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
    check(secondary.get("optional") is True, f"{role}: secondary token optional (only during a rotation)")

    # Service, Ingress, PDB, HPA, NetworkPolicy all point at these pods.
    labels = pod["metadata"]["labels"]

    def selects(selector):
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    svc = by_kind["Service"][0]
    check(selects(svc["spec"]["selector"]), f"{role}: Service selects the pods")
    ing = by_kind["Ingress"][0]
    rule = ing["spec"]["rules"][0]
    check(rule["host"] == parsed.hostname, f"{role}: Ingress host {rule['host']} is the public URL's host")
    check(ing["spec"]["tls"][0]["hosts"] == [rule["host"]], f"{role}: Ingress TLS covers the host")
    backend = rule["http"]["paths"][0]["backend"]["service"]
    check(backend["name"] == svc["metadata"]["name"], f"{role}: Ingress routes to the Service")
    check(selects(by_kind["PodDisruptionBudget"][0]["spec"]["selector"]["matchLabels"]), f"{role}: PDB selects the pods")
    hpa = by_kind["HorizontalPodAutoscaler"][0]["spec"]
    check(hpa["scaleTargetRef"]["name"] == deploy["metadata"]["name"] and hpa["minReplicas"] >= 2,
          f"{role}: HPA scales the Deployment, at least 2 replicas")
    np = policies["twiml-failover"]
    check(all(selects(p["podSelector"]["matchLabels"]) for p in policies.values()),
          f"{role}: every NetworkPolicy selects the pods")
    check(set(np["policyTypes"]) == {"Ingress", "Egress"}, f"{role}: NetworkPolicy restricts both directions")
    check(all(p.get("port") == 8080 for r in np["ingress"] for p in r["ports"]), f"{role}: only port 8080 is open")
    check(all(p.get("port") == 53 for r in np["egress"] for p in r["ports"]), f"{role}: its own egress is DNS only")
    journal_checks(role, c, volumes, policies, clusters, by_kind.get("PersistentVolumeClaim", []))


# The documentation ranges base/networkpolicy.yaml holds until an overlay sets real addresses.
PLACEHOLDER_NETWORKS = ("192.0.2.0/24", "198.51.100.0/24")


def secret_key_refs(container):
    """{env name: (secret name, key)} for the env entries taken from Secrets."""
    out = {}
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            out[e["name"]] = (ref["name"], ref["key"])
    return out


def mounted_secret_file(container, volumes, path):
    """(secret name, key) of the Secret file mounted at `path`, or None."""
    for m in container.get("volumeMounts", []):
        folder = m["mountPath"].rstrip("/") + "/"
        secret = volumes.get(m["name"], {}).get("secret")
        if secret and path.startswith(folder):
            for item in secret.get("items", []):
                if folder + item["path"] == path:
                    return secret["secretName"], item["key"]
    return None


def journal_checks(role, c, volumes, policies, clusters, claims):
    """The journal on PostgreSQL as issue 22 wants it: credentials from Secrets (the password as
    a file), TLS verified against the database's CA, a writable spill folder, egress to the
    database and the forward target, and nothing secret in a plain value."""
    env = {k: env_value(c, k) for k in env_of(c)}
    refs = secret_key_refs(c)
    journal = env.get("TWIML_FAILOVER_JOURNAL") or ""
    check(journal.startswith(("postgres://", "postgresql://")) and "@" not in journal,
          f"{role}: journal on PostgreSQL, no credentials in the URL ({journal!r})")
    check("PGPASSWORD" not in env and not any("PASSWORD" in k and v for k, v in env.items()
                                              if k != "TWIML_FAILOVER_JOURNAL_PASSWORD_FILE"),
          f"{role}: no password in a plain env value")
    for var in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER"):
        check(var in refs, f"{role}: {var} from Secret {refs.get(var, ('?',))[0]}")
    secret_names = {refs[v][0] for v in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER")}
    check(len(secret_names) == 1, f"{role}: PG* from one Secret {sorted(secret_names)}")
    (secret,) = secret_names
    password = mounted_secret_file(c, volumes, env.get("TWIML_FAILOVER_JOURNAL_PASSWORD_FILE") or "")
    check(password == (secret, "password"),
          f"{role}: TWIML_FAILOVER_JOURNAL_PASSWORD_FILE is key `password` of Secret {secret}, mounted")
    check(env.get("PGSSLMODE") == "verify-full", f"{role}: PGSSLMODE=verify-full")
    ca = mounted_secret_file(c, volumes, env.get("PGSSLROOTCERT") or "")
    check(ca is not None and ca[1] == "ca.crt", f"{role}: PGSSLROOTCERT is a mounted Secret's ca.crt ({ca})")
    spill = env.get("TWIML_FAILOVER_JOURNAL_SPILL_DIR") or ""
    writable = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", []) if not m.get("readOnly")}
    spill_volume = volumes.get(writable.get(spill), {})
    claim_name = spill_volume.get("persistentVolumeClaim", {}).get("claimName")
    if claim_name is None:
        check(spill in writable and "emptyDir" in spill_volume, f"{role}: spill folder {spill} is a writable emptyDir")
    else:
        # components/shared-spill: one volume for every pod, so a pod's spill outlives the pod.
        claim = next((d for d in claims if d["metadata"]["name"] == claim_name), None)
        check(claim is not None and claim["spec"].get("accessModes") == ["ReadWriteMany"],
              f"{role}: spill folder {spill} on the claim {claim_name}, ReadWriteMany (shared by every pod)")
        check(claim["spec"].get("storageClassName") not in (None, "", "rwx-placeholder"),
              f"{role}: the overlay set the claim's storage class ({claim['spec'].get('storageClassName')})")
    check(set(writable) == {spill}, f"{role}: the spill folder is the only writable mount")
    forward = urllib.parse.urlsplit(env.get("TWIML_FAILOVER_FORWARD_TO") or "")
    check(forward.scheme == "https" and forward.hostname, f"{role}: forwards to {forward.geturl()!r} (https)")
    egress = policies["twiml-failover-egress"]["egress"]
    ports = [[p.get("port") for p in r["ports"]] for r in egress]
    cidrs = [t.get("ipBlock", {}).get("cidr") for r in egress for t in r["to"]]
    check(ports == [[5432], [443]], f"{role}: egress to the database (5432) and the forward target (443)")
    check(not set(cidrs) & set(PLACEHOLDER_NETWORKS) and "0.0.0.0/0" not in cidrs,
          f"{role}: the overlay set the egress addresses ({', '.join(map(str, cidrs))})")
    if clusters:
        cluster = clusters[0]
        name, spec = cluster["metadata"]["name"], cluster["spec"]
        check(secret == f"{name}-app" and ca[0] == f"{name}-ca",
              f"{role}: journal settings from CloudNativePG's {name}-app and {name}-ca Secrets")
        check(spec.get("instances", 1) >= 2 and spec.get("affinity", {}).get("topologyKey")
              == "topology.kubernetes.io/zone",
              f"{role}: database Cluster {name}: {spec.get('instances')} instances spread over zones")
        check(spec.get("postgresql", {}).get("synchronous", {}).get("number", 0) >= 1,
              f"{role}: database commits wait for a standby (synchronous)")
        db = policies["twiml-failover-egress-database"]["egress"]
        check(db == [{"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": name}}}],
                      "ports": [{"protocol": "TCP", "port": 5432}]}],
              f"{role}: egress to the Cluster's pods on 5432")
    else:
        check(secret == "twiml-failover-journal" and ca == ("twiml-failover-journal", "ca.crt"),
              f"{role}: journal settings from the Secret twiml-failover-journal (external database)")


def cloudrun(path, pod_out):
    with open(path, encoding="utf-8") as f:
        svc = yaml.safe_load(f)
    check(svc.get("apiVersion") == "serving.knative.dev/v1" and svc.get("kind") == "Service",
          "cloudrun: Knative Serving v1 Service")
    template = svc["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    check(int(annotations.get("autoscaling.knative.dev/minScale", "0")) >= 1, "cloudrun: min instances >= 1")
    spec = template["spec"]
    check(0 < int(spec.get("timeoutSeconds", 300)) <= TWILIO_HARD_LIMIT_S,
          f"cloudrun: request timeout {spec.get('timeoutSeconds')} s <= Twilio's {TWILIO_HARD_LIMIT_S} s")
    check(len(spec["containers"]) == 1, "cloudrun: one container")
    c = spec["containers"][0]
    check([p.get("containerPort") for p in c.get("ports", [])] == [8080], "cloudrun: container port 8080")
    check(env_value(c, "TWIML_FAILOVER_ROLE") == "fallback", "cloudrun: role fallback")
    check(env_value(c, "TWIML_FAILOVER_LISTEN") == "0.0.0.0:8080", "cloudrun: listens on 0.0.0.0:8080")
    public = env_value(c, "TWIML_FAILOVER_PUBLIC_URL") or ""
    check(public.startswith("https://") and not public.endswith("/") and "#" not in public,
          "cloudrun: public URL is https without trailing slash or fragment")
    # Cloud Run kills the instance 10 s after SIGTERM. What must be done by then is the spill file:
    # after it the exit only waits for the forwarder (whose undelivered events stay journaled).
    lookup = env_lookup(c)
    lame = float(lookup("TWIML_FAILOVER_LAME_DUCK") or LAME_DUCK_S)
    drain = float(lookup("TWIML_FAILOVER_DRAIN_TIMEOUT") or "nan")
    spilled_by = lame + LISTENER_CLOSE_S + drain + FORCED_CLOSE_S + JOURNAL_SPILLED_BY_S
    check(lookup("TWIML_FAILOVER_JOURNAL_SPILL_DIR") is not None and spilled_by < 10,
          f"cloudrun: the spill file is written {spilled_by:g} s after SIGTERM at the latest (lame duck {lame:g}"
          f" + close {LISTENER_CLOSE_S} + drain {drain:g} + {FORCED_CLOSE_S} + journal {JOURNAL_SPILLED_BY_S:g},"
          f" a database that hangs included) < the 10 s Cloud Run allows")
    spill_checks_cloudrun(template, c)
    check_memory("cloudrun", {k: env_value(c, k) for k in env_of(c)},
                 mib(c.get("resources", {}).get("limits", {}).get("memory", "512Mi")))
    token = env_of(c).get("TWILIO_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
    check(bool(token.get("name")) and bool(token.get("key")), "cloudrun: auth token from Secret Manager (secretKeyRef)")
    journal = env_value(c, "TWIML_FAILOVER_JOURNAL") or ""
    instance = annotations.get("run.googleapis.com/cloudsql-instances", "")
    check(journal == "postgres://" and instance and env_value(c, "PGHOST") == f"/cloudsql/{instance}",
          f"cloudrun: journal on Cloud SQL {instance!r} through its unix socket (PGHOST)")
    check("PGPASSWORD" not in env_of(c), "cloudrun: no password in the environment")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    password = env_value(c, "TWIML_FAILOVER_JOURNAL_PASSWORD_FILE") or ""
    folder, _, file = password.rpartition("/")
    volume = {v["name"]: v for v in spec.get("volumes", [])}.get(mounts.get(folder), {})
    check(any(i.get("path") == file for i in volume.get("secret", {}).get("items", [])),
          f"cloudrun: journal password {password} from Secret Manager "
          f"({volume.get('secret', {}).get('secretName')}), mounted as a file")
    check(annotations.get("run.googleapis.com/cpu-throttling") == "false",
          "cloudrun: CPU between requests (the journal retries and the forwarder run in the background)")
    forward = urllib.parse.urlsplit(env_value(c, "TWIML_FAILOVER_FORWARD_TO") or "")
    check(forward.scheme == "https" and forward.hostname, f"cloudrun: forwards to {forward.geturl()!r}")
    check(http_path(c.get("startupProbe")) == "/readyz", "cloudrun: startup probe on /readyz")
    check(http_path(c.get("livenessProbe")) == "/healthz", "cloudrun: liveness probe on /healthz")
    # Cloud Run's container fields are a subset of Kubernetes' core/v1 Container: let
    # kubernetes-validate check them strictly inside a synthetic Pod.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cloudrun-container-check"},
           "spec": {"containers": spec["containers"], "serviceAccountName": "cloudrun"}}
    with open(pod_out, "w", encoding="utf-8") as f:
        yaml.safe_dump(pod, f, sort_keys=False)
    print(f"  ok: cloudrun: containers written to {pod_out} for schema validation")


def cloudrun_monitor(path, pod_out):
    with open(path, encoding="utf-8") as f:
        svc = yaml.safe_load(f)
    check(svc.get("apiVersion") == "serving.knative.dev/v1" and svc.get("kind") == "Service",
          "cloudrun monitor: Knative Serving v1 Service")
    template = svc["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    check(annotations.get("autoscaling.knative.dev/minScale") == "1"
          and annotations.get("autoscaling.knative.dev/maxScale") == "1",
          "cloudrun monitor: exactly one instance")
    check(annotations.get("run.googleapis.com/cpu-throttling") == "false",
          "cloudrun monitor: CPU between requests (the rounds run in the background)")
    check(svc["metadata"]["annotations"].get("run.googleapis.com/ingress") == "internal",
          "cloudrun monitor: not reachable from the internet")
    spec = template["spec"]
    (c,) = spec["containers"]
    check(c.get("args") == ["monitor"], "cloudrun monitor: runs `twiml-failover monitor`")
    port = [p.get("containerPort") for p in c.get("ports", [])]
    check(port == [9090] and env_value(c, "TWIML_FAILOVER_MONITOR_LISTEN") == "0.0.0.0:9090",
          "cloudrun monitor: listens on 0.0.0.0 at the container port 9090")
    env = env_of(c)
    check(all(n in env for n in ("TWILIO_ACCOUNT_SID", "TWILIO_API_KEY", "TWILIO_API_SECRET")),
          "cloudrun monitor: REST credentials from Secret Manager (an API key)")
    mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
    token = env_value(c, "TWIML_FAILOVER_AUTH_TOKEN_FILE") or ""
    check(any(token.startswith(m + "/") for m in mounts), "cloudrun monitor: the auth token file is mounted")
    check(env_value(c, "TWIML_FAILOVER_NUMBERS_WIRING") == "/etc/twiml-failover/wiring.toml",
          "cloudrun monitor: the image's wiring file")
    check(http_path(c.get("livenessProbe")) == "/healthz", "cloudrun monitor: liveness probe on /healthz")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cloudrun-monitor-check"},
           "spec": {"containers": spec["containers"], "serviceAccountName": "cloudrun"}}
    with open(pod_out, "w", encoding="utf-8") as f:
        yaml.safe_dump(pod, f, sort_keys=False)
    print(f"  ok: cloudrun monitor: containers written to {pod_out} for schema validation")


def spill_checks_cloudrun(template, c):
    """The spill folder on an NFS volume (Filestore) every instance mounts: Cloud Run's NFS
    client gives the atomic rename the spill's claims rely on (a Cloud Storage volume does not)."""
    annotations = template["metadata"]["annotations"]
    spec = template["spec"]
    spill = env_value(c, "TWIML_FAILOVER_JOURNAL_SPILL_DIR")
    mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == spill), {})
    volume = {v["name"]: v for v in spec.get("volumes", [])}.get(mount.get("name"), {})
    nfs = volume.get("nfs", {})
    check(bool(nfs.get("server")) and nfs.get("path", "").startswith("/") and nfs.get("readOnly") is False
          and not mount.get("readOnly", False),
          f"cloudrun: spill folder {spill} on an NFS volume ({nfs.get('server')}:{nfs.get('path')}), writable")
    check(annotations.get("run.googleapis.com/execution-environment") == "gen2",
          "cloudrun: gen2 execution environment (NFS volumes need it)")
    check(bool(annotations.get("run.googleapis.com/network-interfaces"))
          and annotations.get("run.googleapis.com/vpc-access-egress") == "private-ranges-only",
          "cloudrun: Direct VPC egress to the NFS server, private ranges only")
    others = [m for m in c.get("volumeMounts", []) if m is not mount]
    check(all(m.get("readOnly") is True for m in others), "cloudrun: the spill folder is the only writable mount")


# The fields gcloud accepts in a LogMetric (Cloud Logging API v2) and an AlertPolicy (Cloud
# Monitoring API v3) file, as far as these files use them; anything else is a typo.
LOG_METRIC_KEYS = {"name", "description", "filter", "metricDescriptor", "valueExtractor",
                   "labelExtractors", "bucketOptions", "disabled"}
ALERT_POLICY_KEYS = {"displayName", "documentation", "combiner", "conditions", "alertStrategy",
                     "notificationChannels", "enabled", "severity", "userLabels"}
CONDITION_KINDS = {"conditionThreshold", "conditionMatchedLog", "conditionAbsent"}


def cloudrun_monitoring(folder):
    """deploy/cloudrun/monitoring: log-based metrics and the alert policies on them."""
    import glob
    import os
    import re
    metrics = {}
    for path in sorted(glob.glob(os.path.join(folder, "log-metrics", "*.yaml"))):
        name = os.path.basename(path)[:-5]
        with open(path, encoding="utf-8") as f:
            m = yaml.safe_load(f)
        check(set(m) <= LOG_METRIC_KEYS and {"filter", "metricDescriptor"} <= set(m),
              f"cloudrun: log metric {name} has only LogMetric fields")
        d = m["metricDescriptor"]
        check(d.get("metricKind") == "DELTA" and d.get("valueType") in ("INT64", "DISTRIBUTION"),
              f"cloudrun: log metric {name} is a DELTA counter or distribution")
        if d["valueType"] == "DISTRIBUTION":
            check(re.fullmatch(r"EXTRACT\(jsonPayload\.[a-z_]+\)", m.get("valueExtractor", "")) and "bucketOptions" in m,
                  f"cloudrun: distribution {name} extracts a jsonPayload field into buckets")
        check('resource.type="cloud_run_revision"' in m["filter"], f"cloudrun: log metric {name} reads Cloud Run logs")
        metrics[name] = m
    policies = sorted(glob.glob(os.path.join(folder, "alert-policies", "*.yaml")))
    used = set()
    for path in policies:
        name = os.path.basename(path)
        with open(path, encoding="utf-8") as f:
            p = yaml.safe_load(f)
        check(set(p) <= ALERT_POLICY_KEYS and p.get("displayName") and p.get("conditions"),
              f"cloudrun: alert policy {name} has only AlertPolicy fields")
        for cond in p["conditions"]:
            kinds = set(cond) & CONDITION_KINDS
            check(len(kinds) == 1 and set(cond) <= CONDITION_KINDS | {"displayName"},
                  f"cloudrun: {name}: condition {cond.get('displayName')!r} has one kind")
            (kind,) = kinds
            if kind == "conditionThreshold":
                t = cond[kind]
                found = re.findall(r'metric\.type="logging\.googleapis\.com/user/([a-z_]+)"', t["filter"])
                check(len(found) == 1 and found[0] in metrics,
                      f"cloudrun: {name}: watches the log metric {found} defined in log-metrics/")
                used.update(found)
                check(t.get("comparison", "").startswith("COMPARISON_") and "thresholdValue" in t
                      and re.fullmatch(r"[0-9]+s", t.get("duration", "")),
                      f"cloudrun: {name}: threshold, comparison and duration")
            if kind == "conditionMatchedLog":
                check("notificationRateLimit" in p.get("alertStrategy", {}),
                      f"cloudrun: {name}: a log-match policy has the notification rate limit the API requires")
    check(set(metrics) == used, f"cloudrun: every log metric has an alert policy ({', '.join(sorted(metrics))})")


def cloudformation(path):
    from cfnlint.decode import cfn_yaml  # noqa: PLC0415 (only this command needs cfn-lint)

    t = cfn_yaml.load(path)
    res = t["Resources"]
    mf = res["FallbackRequestsMetricFilter"]["Properties"]
    check(mf["FilterPattern"] == "{ $.fallback IS TRUE }", "aws: metric filter counts JSON lines with fallback=true")
    alarm = res["FallbackInUseAlarm"]["Properties"]
    metric = mf["MetricTransformations"][0]
    check(alarm["MetricName"] == metric["MetricName"] and alarm["Namespace"] == metric["MetricNamespace"],
          "aws: the fallback alarm watches the metric filter's metric")
    tg = res["TargetGroup"]["Properties"]
    check(tg["HealthCheckPath"] == "/healthz" and tg["Port"] == 8080, "aws: target group health check /healthz on 8080")
    dereg = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}["deregistration_delay.timeout_seconds"]
    check(TWILIO_HARD_LIMIT_S <= int(dereg) < 300, f"aws: deregistration delay {dereg} s covers Twilio's 15 s")
    cdef = res["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in cdef["Environment"]}
    check(env.get("TWIML_FAILOVER_ROLE") == "fallback" and env.get("TWIML_FAILOVER_LISTEN") == "0.0.0.0:8080",
          "aws: role fallback, listening on 0.0.0.0:8080")
    # A journal set through Secrets counts as set.
    secret_names = {s["Name"] for s in cdef.get("Secrets", [])}
    after, how = after_sigterm(lambda name: env.get(name, "" if name in secret_names else None))
    check(after + SHUTDOWN_MARGIN_S <= cdef["StopTimeout"] <= 120,
          f"aws: {how} + margin {SHUTDOWN_MARGIN_S} s <= StopTimeout {cdef['StopTimeout']} s (Fargate max 120)")
    memory = t["Parameters"]["Memory"]
    check_memory("aws", env, min([int(memory["Default"])] + [int(v) for v in memory.get("AllowedValues", [])]))
    secrets = {s["Name"] for s in cdef["Secrets"]}
    check("TWILIO_AUTH_TOKEN" in secrets and "TWILIO_AUTH_TOKEN" not in env,
          "aws: auth token injected from Secrets Manager, not plain environment")
    check(cdef["LogConfiguration"]["LogDriver"] == "awslogs", "aws: logs to CloudWatch (awslogs)")
    check(cdef.get("ReadonlyRootFilesystem") is True, "aws: read-only root filesystem")
    params = t["Parameters"]
    check(int(params["DesiredCount"]["MinValue"]) >= 2, "aws: at least 2 tasks")
    check(env.get("TWIML_FAILOVER_JOURNAL") == "postgres://" and {"PGUSER", "PGPASSWORD"} <= secrets
          and not {"PGUSER", "PGPASSWORD"} & set(env),
          "aws: journal on PostgreSQL, user and password from Secrets Manager (not plain environment)")
    check(env.get("PGSSLMODE") == "verify-full" and env.get("PGSSLROOTCERT"), "aws: PGSSLMODE=verify-full with a CA file")
    check(env.get("TWIML_FAILOVER_FORWARD_TO") == {"Ref": "ForwardTo"}, "aws: --forward-to is the ForwardTo parameter")
    spill = env.get("TWIML_FAILOVER_JOURNAL_SPILL_DIR")
    writable = [m["ContainerPath"] for m in cdef.get("MountPoints", []) if not m.get("ReadOnly", False)]
    check(writable == [spill], f"aws: the spill folder {spill} is the only writable mount")
    check(cdef.get("RestartPolicy", {}).get("Enabled") is True,
          "aws: the container restarts in its task (its spill folder is taken back)")
    spill_checks_aws(t, cdef)
    db = res["Database"]
    dbp = db["Properties"]
    check(db.get("Condition") == "CreateDatabase" and dbp["Engine"] == "postgres" and dbp["MultiAZ"] is True
          and dbp["StorageEncrypted"] is True and dbp["PubliclyAccessible"] is False
          and dbp["ManageMasterUserPassword"] is True,
          "aws: RDS PostgreSQL when DatabaseMode=create: Multi-AZ, encrypted, private, password managed in Secrets Manager")
    ingress = res["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    check(len(ingress) == 1 and ingress[0]["SourceSecurityGroupId"] == {"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]},
          "aws: only the tasks may reach the database")
    egress = [r["Properties"] for r in res.values() if r["Type"] == "AWS::EC2::SecurityGroupEgress"]
    check({e["FromPort"] if isinstance(e["FromPort"], int) else "database" for e in egress} == {443, 2049, "database"},
          "aws: the tasks may connect out on 443, to the database and to the spill folder's EFS (2049) only")
    nfs = [e for e in egress if e["FromPort"] == 2049]
    check(len(nfs) == 1 and nfs[0]["ToPort"] == 2049
          and nfs[0].get("DestinationSecurityGroupId") == {"Fn::GetAtt": ["SpillSecurityGroup", "GroupId"]},
          "aws: NFS out only to the spill folder's security group")
    filters = {r["Properties"]["MetricTransformations"][0]["MetricName"]
               for r in res.values() if r["Type"] == "AWS::Logs::MetricFilter"}
    watched = set()
    for r in res.values():
        if r["Type"] == "AWS::CloudWatch::Alarm":
            p = r["Properties"]
            watched.add(p.get("MetricName"))
            watched.update(m.get("MetricStat", {}).get("Metric", {}).get("MetricName") for m in p.get("Metrics", []))
    check(filters <= watched, f"aws: every metric filter's metric has an alarm ({', '.join(sorted(filters))})")
    for name in ("JournalUp", "JournalBacklogEvents", "JournalOldestUndeliveredAgeSeconds", "JournalLostEvents",
                 "JournalDroppedEvents", "JournalSpilledEvents"):
        check(name in filters, f"aws: alarm on {name}")
    listener = res["HttpsListener"]["Properties"]
    check(listener["Protocol"] == "HTTPS" and listener["Port"] == 443, "aws: HTTPS listener on 443 with ACM certificate")
    check("LoadBalancerDnsName" in t["Outputs"] and "VoiceFallbackUrl" in t["Outputs"], "aws: outputs the URLs")


def spill_checks_aws(t, cdef):
    """The spill folder on EFS as issue 22's follow-up wants it: shared by every task and outliving
    each (regional), encrypted at rest and in transit, mounted through an access point as the
    image's user with a 0700 root folder and IAM authorization, reachable from the tasks only."""
    res = t["Resources"]
    task = res["TaskDefinition"]["Properties"]
    mount = next(m for m in cdef["MountPoints"] if m["ContainerPath"] == env_of_cfn(cdef)["TWIML_FAILOVER_JOURNAL_SPILL_DIR"])
    volume = next(v for v in task["Volumes"] if v["Name"] == mount["SourceVolume"])
    efs = volume.get("EFSVolumeConfiguration", {})
    check(efs.get("FilesystemId") == {"Ref": "SpillFileSystem"} and efs.get("TransitEncryption") == "ENABLED",
          "aws: the spill folder is the EFS file system SpillFileSystem, TLS in transit")
    auth = efs.get("AuthorizationConfig", {})
    check(auth.get("IAM") == "ENABLED" and auth.get("AccessPointId") == {"Ref": "SpillAccessPoint"}
          and efs.get("RootDirectory", "/") == "/",
          "aws: mounted through the access point SpillAccessPoint with IAM authorization")
    fs = res["SpillFileSystem"]
    fsp = fs["Properties"]
    check(fs["Type"] == "AWS::EFS::FileSystem" and fsp.get("Encrypted") is True
          and "AvailabilityZoneName" not in fsp and fs.get("DeletionPolicy") == "Retain",
          "aws: EFS encrypted at rest, regional (no one-zone storage), kept when the stack is deleted")
    policy = fsp.get("FileSystemPolicy", {}).get("Statement", [])
    check(any(st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
              for st in policy), "aws: the file system policy refuses clients without TLS")
    ap = res["SpillAccessPoint"]["Properties"]
    user = [int(x) for x in cdef["User"].split(":")]
    root = ap["RootDirectory"]
    check([int(ap["PosixUser"]["Uid"]), int(ap["PosixUser"]["Gid"])] == user
          and [int(root["CreationInfo"]["OwnerUid"]), int(root["CreationInfo"]["OwnerGid"])] == user
          and root["CreationInfo"]["Permissions"] == "0700",
          f"aws: the access point acts as the image's user {user[0]}:{user[1]}, its root folder 0700")
    targets = sorted(str(r["Properties"]["SubnetId"]) for r in res.values() if r["Type"] == "AWS::EFS::MountTarget")
    wanted = sorted(str({"Fn::Select": [i, {"Ref": "TaskSubnetIds"}]}) for i in (0, 1))
    check(targets == wanted, "aws: an EFS mount target in each of the two task subnets")
    for r in res.values():
        if r["Type"] == "AWS::EFS::MountTarget":
            check(r["Properties"]["SecurityGroups"] == [{"Fn::GetAtt": ["SpillSecurityGroup", "GroupId"]}],
                  "aws: the mount target admits through SpillSecurityGroup only")
    ingress = res["SpillSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    check(ingress == [{"IpProtocol": "tcp", "FromPort": 2049, "ToPort": 2049,
                       "SourceSecurityGroupId": {"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]},
                       "Description": ingress[0].get("Description")}],
          "aws: NFS (2049) into the spill folder from the tasks' security group only")
    check(task.get("TaskRoleArn") == {"Fn::GetAtt": ["TaskRole", "Arn"]}, "aws: the task has a role of its own")
    statements = [st for p in res["TaskRole"]["Properties"]["Policies"] for st in p["PolicyDocument"]["Statement"]]
    check(len(statements) == 1 and statements[0]["Effect"] == "Allow"
          and set(statements[0]["Action"]) == {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"}
          and statements[0]["Resource"] == {"Fn::GetAtt": ["SpillFileSystem", "Arn"]}
          and statements[0]["Condition"] == {"StringEquals": {"elasticfilesystem:AccessPointArn":
                                                              {"Fn::GetAtt": ["SpillAccessPoint", "Arn"]}}},
          "aws: the task role may mount and write the spill folder through its access point, nothing else")
    depends = res["Service"].get("DependsOn", [])
    check({"SpillMountTargetA", "SpillMountTargetB"} <= set(depends),
          "aws: the service starts tasks once both mount targets exist")


def env_of_cfn(cdef):
    return {e["Name"]: e["Value"] for e in cdef["Environment"]}


def rule_spec(path, out):
    with open(path, encoding="utf-8") as f:
        rule = yaml.safe_load(f)
    check(rule.get("apiVersion") == "monitoring.coreos.com/v1" and rule.get("kind") == "PrometheusRule",
          "prometheus: PrometheusRule (monitoring.coreos.com/v1)")
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump(rule["spec"], f, sort_keys=False)
    print(f"  ok: prometheus: spec written to {out}")


def monitor_kubernetes(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = sorted(d["kind"] for d in docs)
    check(kinds == ["Deployment", "Namespace", "NetworkPolicy", "ServiceAccount"],
          "monitor: a Namespace, a ServiceAccount, a Deployment, a NetworkPolicy")
    check("Secret" not in kinds and "ConfigMap" not in kinds,
          "monitor: no Secret or wiring ConfigMap in the manifests (created from the operator's files)")
    ns = next(d for d in docs if d["kind"] == "Namespace")
    check(ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted",
          "monitor: namespace enforces Pod Security 'restricted'")
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    check(deploy["spec"].get("replicas") == 1 and deploy["spec"]["strategy"]["type"] == "Recreate",
          "monitor: exactly one pod, never two during a rollout (double reads and probes)")
    spec = deploy["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    check(c.get("args") == ["monitor"], "monitor: runs `twiml-failover monitor`")
    listen = env_value(c, "TWIML_FAILOVER_MONITOR_LISTEN") or ""
    port = int(listen.rsplit(":", 1)[-1]) if ":" in listen else None
    check(listen.startswith("0.0.0.0:") and any(p.get("containerPort") == port for p in c.get("ports", [])),
          f"monitor: listens on 0.0.0.0 at the container port ({listen})")
    env = env_of(c)
    check(all(n in env for n in ("TWILIO_ACCOUNT_SID", "TWILIO_API_KEY", "TWILIO_API_SECRET")),
          "monitor: REST credentials from the Secret (an API key)")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    for var in ("TWIML_FAILOVER_NUMBERS_WIRING", "TWIML_FAILOVER_AUTH_TOKEN_FILE"):
        value = env_value(c, var) or ""
        check(any(value.startswith(m + "/") for m in mounts), f"monitor: {var} {value!r} is on a mounted volume")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz",
          "monitor: liveness /healthz, readiness /readyz")
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")["spec"]
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule.get("ports", [])}
    check(ingress_ports == {port}, f"monitor: the NetworkPolicy admits only the metrics port {port}")
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    check(egress_ports == {53, 443}, "monitor: egress to DNS and HTTPS only")


def monitor_defaults():
    """The monitor's default interval and jitter, as its flags declare them (src/monitor/args.rs)."""
    import re
    with open("src/monitor/args.rs", encoding="utf-8") as f:
        text = f.read()

    def default(env):
        found = re.search(r'env = "' + env + r'",\s*default_value = "([0-9.]+)"', text)
        check(found is not None, f"monitor: {env} has a default in src/monitor/args.rs")
        return float(found[1])
    return default("TWIML_FAILOVER_MONITOR_INTERVAL"), default("TWIML_FAILOVER_MONITOR_JITTER")


def round_window(rounds, interval, jitter):
    """The longest alarm window (seconds) that never holds `rounds` + 1 rounds: a round starts at
    least (1 - jitter) x interval after the last one ended, so `rounds` + 1 of them span more than
    `rounds` x that. Failing rounds counted in it to `rounds` are then `rounds` in a row."""
    return int(rounds * (1 - jitter) * interval)


def monitor_alarms(rule_path, aws_path, cloudrun_monitoring_path, cloudrun_service):
    """TwimlFailoverFallbackProbeFailing's "two rounds in a row" on every platform: the Prometheus
    rule's round count, and the CloudWatch alarm's and the Cloud Monitoring policy's windows over
    the per-round log line, held to the monitor's default interval and jitter."""
    import re
    from cfnlint.decode import cfn_yaml  # noqa: PLC0415 (only this command needs cfn-lint)
    interval, jitter = monitor_defaults()
    with open(rule_path, encoding="utf-8") as f:
        rule = yaml.safe_load(f)
    (alert,) = [r for g in rule["spec"]["groups"] for r in g["rules"]
                if r.get("alert") == "TwimlFailoverFallbackProbeFailing"]
    found = re.fullmatch(r'.*twiml_failover_monitor_probe_failing_rounds\{role="fallback"\}\)\s*>=\s*([0-9]+)',
                         alert["expr"].strip())
    check(found is not None and "for" not in alert,
          "monitor alarms: the Prometheus rule counts failing_rounds of fallback URLs (no `for`)")
    rounds = int(found[1])
    check(rounds >= 2, f"monitor alarms: the Prometheus rule wants {rounds} rounds in a row")

    t = cfn_yaml.load(aws_path)
    param = t["Parameters"]["IntervalSeconds"]
    check(float(param["Default"]) == interval,
          f"aws monitor: IntervalSeconds defaults to the monitor's interval {interval:g} s")
    windows = t["Mappings"]["RoundWindow"]
    check(sorted(windows, key=float) == sorted(param["AllowedValues"], key=float),
          "aws monitor: RoundWindow has a window for each allowed IntervalSeconds")
    for value, w in windows.items():
        i = float(value)
        periods = int(w["Periods"])
        # Two consecutive rounds are at most (1 + jitter) x interval apart plus a round's time
        # (a minute allowed): they must fall in the window's periods, whatever the minute.
        longest_gap = (rounds - 1) * ((1 + jitter) * i + 60)
        check(periods * 60 <= round_window(rounds, i, jitter) and (periods - 1) * 60 > longest_gap,
              f"aws monitor: at interval {value} s, {periods} one-minute periods never hold {rounds + 1} rounds"
              f" ({round_window(rounds, i, jitter)} s) and always hold {rounds} in a row ({longest_gap:g} s apart)")
    res = t["Resources"]
    mf = res["FallbackProbeFailingMetricFilter"]["Properties"]
    metric = mf["MetricTransformations"][0]
    check('$.message = "round finished"' in mf["FilterPattern"] and "$.fallback_urls_failing > 0" in mf["FilterPattern"]
          and metric["MetricValue"] == "1" and "DefaultValue" not in metric,
          "aws monitor: one point per round with a fallback URL failing (the per-round line)")
    alarm = res["FallbackProbeFailingAlarm"]["Properties"]
    check(alarm["MetricName"] == metric["MetricName"] and alarm["Namespace"] == metric["MetricNamespace"]
          and alarm["Period"] == 60 and alarm["Statistic"] == "Sum"
          and alarm["EvaluationPeriods"] == {"Fn::FindInMap": ["RoundWindow", {"Ref": "IntervalSeconds"}, "Periods"]}
          and alarm["DatapointsToAlarm"] == rounds and alarm["Threshold"] == 1
          and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold",
          f"aws monitor: FallbackProbeFailing alarms on {rounds} failing rounds within the RoundWindow periods")

    with open(cloudrun_service, encoding="utf-8") as f:
        svc = yaml.safe_load(f)
    (c,) = svc["spec"]["template"]["spec"]["containers"]
    cr_interval = float(env_value(c, "TWIML_FAILOVER_MONITOR_INTERVAL") or interval)
    check(cr_interval == interval and env_value(c, "TWIML_FAILOVER_MONITOR_JITTER") is None,
          f"cloudrun monitor: rounds every {interval:g} s, jittered by {jitter:g} (the defaults)")
    path = os.path.join(cloudrun_monitoring_path, "alert-policies", "monitor-fallback-probe-failing.yaml")
    with open(path, encoding="utf-8") as f:
        policy = yaml.safe_load(f)
    (cond,) = policy["conditions"]
    t = cond["conditionThreshold"]
    (agg,) = t["aggregations"]
    window = round_window(rounds, cr_interval, jitter)
    check("twiml_failover_monitor_fallback_failing_rounds" in t["filter"]
          and agg["alignmentPeriod"] == f"{window}s" and agg["perSeriesAligner"] == "ALIGN_SUM"
          and t["comparison"] == "COMPARISON_GT" and t["thresholdValue"] == rounds - 1 and t["duration"] == "0s"
          and window > (rounds - 1) * ((1 + jitter) * cr_interval + 60),
          f"cloudrun monitor: FallbackProbeFailing fires on {rounds} failing rounds within {window} s")
    with open(os.path.join(cloudrun_monitoring_path, "log-metrics",
                           "twiml_failover_monitor_fallback_failing_rounds.yaml"), encoding="utf-8") as f:
        m = yaml.safe_load(f)
    check('jsonPayload.message="round finished"' in m["filter"] and "jsonPayload.fallback_urls_failing>0" in m["filter"]
          and f'service_name="{svc["metadata"]["name"]}"' in m["filter"],
          "cloudrun monitor: the log metric counts the monitor's rounds with a fallback URL failing")


def grafana(path, out):
    import json
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    check(dash.get("uid") and dash.get("title") and isinstance(dash.get("panels"), list),
          "grafana: a dashboard with a uid, a title and panels")
    ids = [p.get("id") for p in dash["panels"]]
    check(len(ids) == len(set(ids)) and None not in ids, "grafana: every panel has its own id")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    rules, unplaced, elsewhere, unknown = [], [], [], []
    for p in dash["panels"]:
        if p.get("type") == "row":
            continue
        if not {"x", "y", "w", "h"} <= set(p.get("gridPos", {})):
            unplaced.append(p.get("title"))
        if p.get("datasource", {}).get("uid") != "${datasource}" or "datasource" not in variables:
            elsewhere.append(p.get("title"))
        for t in p.get("targets", []):
            # Grafana's own variables, as Prometheus would receive them.
            expr = t["expr"].replace("$__rate_interval", "5m").replace("$__range", "1h")
            if "$" in expr:
                unknown.append(t["expr"])
            rules.append({"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": expr})
    check(not unplaced, f"grafana: every panel placed on the grid {unplaced}")
    check(not elsewhere, f"grafana: every panel reads the chosen Prometheus (${{datasource}}) {elsewhere}")
    check(not unknown, f"grafana: no variable Grafana does not define {unknown}")
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)
    print(f"  ok: grafana: {len(rules)} queries written to {out}")


# ---------------------------------------------------------------------------------------------
# `shipped`: what a deployment runs, as tests/manifests.rs needs it to run the binary the same way.


def image():
    """The image's own settings, from deploy/container/Containerfile: entrypoint, default command,
    environment, user, and the files it carries (destination -> what the build stage copied there
    from the repository, `fetched:URL` for a download, else the build stage's own path: the binary
    or a folder it made)."""
    import json
    import shlex
    entrypoint, cmd, env, user, files = [], [], {}, None, {}
    with open("deploy/container/Containerfile", encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    stage_copies = {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        op, rest = words[0], line[len(words[0]):].strip()
        if op == "FROM":
            # A stage starts from its base image: only the last stage's settings are the image's.
            entrypoint, cmd, env, user = [], [], {}, None
        elif op == "COPY" and "--from=" not in rest:
            *src, dest = [w for w in rest.split() if not w.startswith("--")]
            stage_copies[dest] = src[0]
        elif op == "ADD":
            src, dest = [w for w in rest.split() if not w.startswith("--")]
            stage_copies[dest] = "fetched:" + src
        elif op == "COPY":
            args = [w for w in rest.split() if not w.startswith("--")]
            src, dest = args[0], args[1]
            opts = {w.split("=")[0]: w.split("=", 1)[1] for w in rest.split() if w.startswith("--")}
            files[dest] = {"from": stage_copies.get(src, src), "chown": opts.get("--chown")}
        elif op == "ENV":
            for pair in shlex.split(rest):
                k, v = pair.split("=", 1)
                env[k] = {"value": v}
        elif op == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif op == "CMD":
            cmd = json.loads(rest)
        elif op == "USER":
            user = [int(x) for x in rest.split(":")]
    return {"entrypoint": entrypoint, "cmd": cmd, "env": env, "user": user, "files": files}


def shipped_kubernetes(overlay):
    import subprocess
    kubectl = os.environ.get("KUBECTL", "kubectl")
    rendered = subprocess.run([kubectl, "kustomize", overlay], check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]
    spec = pod["spec"]
    c = spec["containers"][0]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    env = {}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        env[e["name"]] = {"secret": [ref["name"], ref["key"]], "optional": ref.get("optional", False)} if ref \
            else {"value": e["value"]}
    mounts = []
    for m in c.get("volumeMounts", []):
        v = volumes[m["name"]]
        if "configMap" in v:
            cm = v["configMap"]
            # A ConfigMap the deployer creates (the monitor's wiring file) is not rendered: its
            # name and items, the content left to the test.
            mounts.append({"path": m["mountPath"], "kind": "files", "writable": False,
                           "configmap": cm["name"], "files": configmaps.get(cm["name"]),
                           "items": [[i["key"], i["path"]] for i in cm.get("items", [])]})
        elif "secret" in v:
            sec = v["secret"]
            items = [[i["key"], i["path"]] for i in sec.get("items", [])]
            mounts.append({"path": m["mountPath"], "kind": "secret", "writable": False,
                           "secret": sec["secretName"], "items": items})
        elif "emptyDir" in v:
            mounts.append({"path": m["mountPath"], "kind": "scratch", "writable": not m.get("readOnly", False)})
        elif "persistentVolumeClaim" in v:
            # A ReadWriteMany claim every pod mounts (components/shared-spill).
            mounts.append({"path": m["mountPath"], "kind": "shared", "writable": not m.get("readOnly", False)})
        else:
            raise CheckFailed(f"{overlay}: volume {m['name']}: unknown kind")
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    annotations = pod["metadata"].get("annotations", {})
    return {
        "args": c.get("command"), "cmd": c.get("args"), "env": env, "mounts": mounts,
        "user": [csc.get("runAsUser", psc.get("runAsUser")), csc.get("runAsGroup", psc.get("runAsGroup"))],
        "read_only_root": csc.get("readOnlyRootFilesystem", False),
        "port": c["ports"][0]["containerPort"],
        "probes": [p["httpGet"]["path"] for p in (c.get("readinessProbe"), c.get("livenessProbe"),
                                                  c.get("startupProbe")) if p],
        "scrape": {"port": int(annotations["prometheus.io/port"]), "path": annotations["prometheus.io/path"]},
    }


def resolve_cfn(value, params, attrs):
    """A CloudFormation value with Ref, Fn::Sub, Fn::If and Fn::GetAtt resolved for one stack."""
    if isinstance(value, list):
        return [resolve_cfn(v, params, attrs) for v in value]
    if not isinstance(value, dict):
        return value
    if "Ref" in value:
        return params.get(value["Ref"], f"@{value['Ref']}@")
    if "Fn::GetAtt" in value:
        return attrs[".".join(value["Fn::GetAtt"])]
    if "Fn::If" in value:
        cond, yes, no = value["Fn::If"]
        return resolve_cfn(yes if params["conditions"][cond] else no, params, attrs)
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        template, extra = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
        local = {k: resolve_cfn(v, params, attrs) for k, v in extra.items()}
        import re
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(local.get(m[1], params.get(m[1], attrs.get(m[1])))), template)
    return {k: resolve_cfn(v, params, attrs) for k, v in value.items()}


def shipped_aws(path):
    """The task definition with DatabaseMode=create and each parameter's default; the values a
    deployment supplies (and what RDS would create) as `@name@` markers the test substitutes."""
    from cfnlint.decode import cfn_yaml  # noqa: PLC0415
    t = cfn_yaml.load(path)
    params = {k: v.get("Default", f"@{k}@") for k, v in t["Parameters"].items()}
    params["AWS::Region"] = "us-east-1"
    params["AWS::StackName"] = "smoke"
    params["AWS::NoValue"] = None
    params["conditions"] = {"CreateDatabase": params.get("DatabaseMode") == "create",
                            "UseExistingDatabase": params.get("DatabaseMode") == "existing"}
    attrs = {"Database.Endpoint.Address": "@DatabaseHost@", "Database.Endpoint.Port": "@DatabasePort@",
             "Database.MasterUserSecret.SecretArn": "@DatabaseSecret@"}
    task = t["Resources"]["TaskDefinition"]["Properties"]
    c = resolve_cfn(task["ContainerDefinitions"][0], params, attrs)
    env = {e["Name"]: {"value": str(e["Value"])} for e in c["Environment"]}
    for sec in c["Secrets"]:
        # ARN:json-key:: (the version stage and id left empty: the current version).
        arn, key = sec["ValueFrom"].removesuffix("::").rsplit(":", 1)
        env[sec["Name"]] = {"secret": [arn, key]}
    volumes = {v["Name"]: v for v in task.get("Volumes", [])}
    # EFS is shared by every task: "shared" (the test gives two servers one folder).
    mounts = [{"path": m["ContainerPath"],
               "kind": "shared" if "EFSVolumeConfiguration" in volumes[m["SourceVolume"]] else "scratch",
               "writable": not m.get("ReadOnly", False)}
              for m in c.get("MountPoints", []) if m["SourceVolume"] in volumes]
    port = c["PortMappings"][0]["ContainerPort"]
    # The load balancer's health check, where the stack has one (the monitor's has none: ECS
    # restarts a task whose process exits).
    tg = t["Resources"].get("TargetGroup", {}).get("Properties")
    return {
        "args": None, "cmd": c.get("Command"), "env": env, "mounts": mounts,
        "user": [int(x) for x in c["User"].split(":")], "read_only_root": c.get("ReadonlyRootFilesystem", False),
        "port": port, "probes": [tg["HealthCheckPath"]] if tg else [],
        # No Prometheus on AWS: the alarms read the logs. /metrics still answers inside the VPC.
        "scrape": {"port": tg["Port"] if tg else port, "path": "/metrics"},
    }


def shipped_cloudrun(path):
    with open(path, encoding="utf-8") as f:
        svc = yaml.safe_load(f)
    template = svc["spec"]["template"]
    spec = template["spec"]
    c = spec["containers"][0]
    env = {}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        env[e["name"]] = {"secret": [ref["name"], ref["key"]]} if ref else {"value": e["value"]}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = []
    for m in c.get("volumeMounts", []):
        if "nfs" in volumes[m["name"]]:
            # An NFS share every instance mounts.
            mounts.append({"path": m["mountPath"], "kind": "shared", "writable": not m.get("readOnly", False)})
            continue
        sec = volumes[m["name"]]["secret"]
        mounts.append({"path": m["mountPath"], "kind": "secret", "writable": False, "secret": sec["secretName"],
                       "items": [[i["key"], i["path"]] for i in sec.get("items", [])]})
    instance = template["metadata"]["annotations"].get("run.googleapis.com/cloudsql-instances")
    if instance:
        mounts.append({"path": f"/cloudsql/{instance}", "kind": "cloudsql", "writable": False})
    return {
        "args": c.get("command"), "cmd": c.get("args"), "env": env, "mounts": mounts,
        # Cloud Run runs the image's USER; its root file system is writable (an in-memory
        # overlay), but nothing the server needs is written there.
        "user": None, "read_only_root": False,
        "port": c["ports"][0]["containerPort"],
        "probes": [c[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe") if p in c],
        "scrape": {"port": c["ports"][0]["containerPort"], "path": "/metrics"},
    }


def shipped(kind, path):
    import json
    render = {"kubernetes": shipped_kubernetes, "aws": shipped_aws, "cloudrun": shipped_cloudrun}[kind]
    out = render(path)
    out["image"] = image()
    print(json.dumps(out, indent=1))


def main(argv):
    try:
        if len(argv) == 3 and argv[0] == "kubernetes":
            kubernetes(argv[1], argv[2])
        elif len(argv) == 3 and argv[0] == "cloudrun":
            cloudrun(argv[1], argv[2])
        elif len(argv) == 3 and argv[0] == "shipped":
            shipped(argv[1], argv[2])
        elif len(argv) == 2 and argv[0] == "cloudrun-monitoring":
            cloudrun_monitoring(argv[1])
        elif len(argv) == 2 and argv[0] == "cloudformation":
            cloudformation(argv[1])
        elif len(argv) == 3 and argv[0] == "rule-spec":
            rule_spec(argv[1], argv[2])
        elif len(argv) == 3 and argv[0] == "cloudrun-monitor":
            cloudrun_monitor(argv[1], argv[2])
        elif len(argv) == 2 and argv[0] == "monitor":
            monitor_kubernetes(argv[1])
        elif len(argv) == 5 and argv[0] == "monitor-alarms":
            monitor_alarms(*argv[1:])
        elif len(argv) == 3 and argv[0] == "grafana":
            grafana(argv[1], argv[2])
        else:
            print(__doc__, file=sys.stderr)
            return 64
    except CheckFailed as e:
        print(f"  FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
