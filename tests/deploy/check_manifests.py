"""deploy/ manifests parse, use only variables the server knows, probe the right paths and
port, and reference only metrics the server exports.  Usage: check_manifests.py SRC BINARY"""
import json
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_test_lib import Server, fail, known_variables  # noqa: E402

src, binary = sys.argv[1], sys.argv[2]
deploy = os.path.join(src, "deploy")
PORT = 3002


def load_yaml(rel):
    path = os.path.join(deploy, rel)
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        fail(f"{rel} does not parse: {e}")


known = known_variables(binary)
errors = []


def check_vars(where, names):
    if not names:
        errors.append(f"{where}: sets no variables (parse problem?)")
    for n in sorted(set(names) - known):
        errors.append(f"{where}: {n} is not a variable signal-server knows (see --help)")


# --- compose: every service built from this repo sets only known variables
compose = load_yaml("compose.yaml")
signal_services = {n: s for n, s in compose["services"].items() if "build" in s}
if len(signal_services) != 2:
    errors.append(f"compose.yaml: expected 2 signal-server services, found {sorted(signal_services)}")
for name, svc in signal_services.items():
    env = svc.get("environment", {})
    env = dict(e.split("=", 1) for e in env) if isinstance(env, list) else env
    check_vars(f"compose.yaml {name}", env)
    if env.get("REDIS_URL") != "redis://redis:6379" or str(env.get("TRUST_PROXY")).lower() != "true":
        errors.append(f"compose.yaml {name}: needs REDIS_URL=redis://redis:6379 and TRUST_PROXY=true")
published = [p for s in compose["services"].values() for p in s.get("ports", [])]
if len(published) != 1:
    errors.append(f"compose.yaml: exactly one published port expected, found {published}")
if "healthcheck" not in compose["services"].get("redis", {}):
    errors.append("compose.yaml: redis has no healthcheck")
# --- compose-cluster: the same two instances on Redis Cluster
cluster = load_yaml("compose-cluster.yaml")
cluster_signal = {n: s for n, s in cluster["services"].items() if "build" in s}
if sorted(cluster_signal) != sorted(signal_services):
    errors.append(f"compose-cluster.yaml: expected the services {sorted(signal_services)} (nginx.conf's "
                  f"upstreams), found {sorted(cluster_signal)}")
for name, svc in cluster_signal.items():
    env = svc.get("environment", {})
    check_vars(f"compose-cluster.yaml {name}", env)
    if "REDIS_URL" in env or not env.get("REDIS_CLUSTER_NODES"):
        errors.append(f"compose-cluster.yaml {name}: needs REDIS_CLUSTER_NODES and no REDIS_URL")
    for node in env.get("REDIS_CLUSTER_NODES", "").split(","):
        if node.split(":")[0] not in cluster["services"]:
            errors.append(f"compose-cluster.yaml {name}: {node} is not a service of the file")
if len([p for s in cluster["services"].values() for p in s.get("ports", [])]) != 1:
    errors.append("compose-cluster.yaml: exactly one published port expected")
nginx = open(os.path.join(deploy, "nginx.conf")).read()
for needle in ("proxy_http_version 1.1", "Upgrade $http_upgrade", "Connection", "X-Forwarded-For"):
    if needle not in nginx:
        errors.append(f"nginx.conf: missing {needle!r} (WebSocket upgrade / client IP)")
for name in signal_services:
    if f"server {name}:{PORT}" not in nginx:
        errors.append(f"nginx.conf: upstream lacks {name}:{PORT}")

# --- Kubernetes
k8s = {f: load_yaml(f"k8s/{f}") for f in
       ("deployment.yaml", "service.yaml", "pdb.yaml", "configmap.yaml", "secret.yaml")}
cm, secret, dep = k8s["configmap.yaml"]["data"], k8s["secret.yaml"]["stringData"], k8s["deployment.yaml"]
check_vars("k8s/configmap.yaml", cm)
check_vars("k8s/secret.yaml", secret)
if set(secret) != {"REDIS_URL", "JWT_SECRET"}:
    errors.append(f"k8s/secret.yaml: expected REDIS_URL and JWT_SECRET, found {sorted(secret)}")
spec = dep["spec"]
pod = spec["template"]["spec"]
c = pod["containers"][0]
if spec.get("replicas") != 2:
    errors.append("k8s/deployment.yaml: replicas must be 2")
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    get = c.get(probe, {}).get("httpGet", {})
    if get.get("path") != path or get.get("port") != PORT:
        errors.append(f"k8s/deployment.yaml: {probe} must GET {path} on {PORT}, has {get}")
if [p.get("containerPort") for p in c.get("ports", [])] != [PORT]:
    errors.append(f"k8s/deployment.yaml: containerPort must be {PORT}")
svc_ports = k8s["service.yaml"]["spec"]["ports"]
if [p["port"] for p in svc_ports] != [PORT]:
    errors.append(f"k8s/service.yaml: port must be {PORT}")
sc = c.get("securityContext", {})
if not (pod.get("securityContext", {}).get("runAsNonRoot") and sc.get("readOnlyRootFilesystem")
        and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"]):
    errors.append("k8s/deployment.yaml: securityContext must be non-root, read-only, no escalation, drop ALL")
drain_ms = int(cm.get("DRAIN_TIMEOUT_MS", 5000))
pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
pre_stop_s = int(pre_stop[-1]) if pre_stop[:1] == ["sleep"] else 0
grace_s = pod.get("terminationGracePeriodSeconds", 30)
if not pre_stop_s or grace_s * 1000 <= pre_stop_s * 1000 + drain_ms:
    errors.append(f"k8s/deployment.yaml: terminationGracePeriodSeconds {grace_s}s must exceed "
                  f"preStop sleep {pre_stop_s}s + DRAIN_TIMEOUT_MS {drain_ms}ms")
sel = k8s["pdb.yaml"]["spec"]["selector"]["matchLabels"]
if sel != spec["selector"]["matchLabels"] or sel != k8s["service.yaml"]["spec"]["selector"]:
    errors.append("k8s: pdb, service and deployment selectors differ")

# --- systemd default file: lists every variable, and only known ones
default_file = open(os.path.join(deploy, "systemd", "signal-server.default")).read()
listed = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", default_file, re.M)
check_vars("systemd/signal-server.default", listed)
for n in sorted(known - set(listed)):
    errors.append(f"systemd/signal-server.default: does not list {n}")

# --- Prometheus and Grafana: parse, and every metric used is exported
load_yaml("prometheus/prometheus.yml")
alerts = load_yaml("prometheus/alerts.yml")
exprs = [r["expr"] for g in alerts["groups"] for r in g["rules"]]
try:
    with open(os.path.join(deploy, "grafana", "signal-server.json")) as f:
        dash = json.load(f)
except (OSError, ValueError) as e:
    fail(f"grafana/signal-server.json does not parse: {e}")
panel_exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
alert_names = {r["alert"] for g in alerts["groups"] for r in g["rules"]}
if len(alert_names) < 5:
    errors.append(f"alerts.yml: expected 5 alerts, found {sorted(alert_names)}")


def base(name):
    return re.sub(r"_(bucket|sum|count)$", "", name)


with Server(binary) as server:
    status, text = server.get("/metrics")
if status != 200:
    fail(f"/metrics answered {status}")
exported = {base(re.split(r"[{\s]", line, 1)[0]) for line in text.splitlines()
            if line and not line.startswith("#")}
metric_re = re.compile(r"\b((?:cloudgaming|process)_[a-z0-9_]+)\b")
for where, texts in (("prometheus/alerts.yml", exprs), ("grafana/signal-server.json", panel_exprs)):
    used = {base(m) for t in texts for m in metric_re.findall(t)}
    if not used:
        errors.append(f"{where}: uses no metrics (parse problem?)")
    for m in sorted(used - exported):
        errors.append(f"{where}: {m} is not exported on /metrics")

if errors:
    fail("\n  " + "\n  ".join(errors))
print(f"ok: compose, k8s, systemd default, {len(alert_names)} alerts, "
      f"{len(dash['panels'])} panels checked against {len(known)} variables and {len(exported)} metrics")
