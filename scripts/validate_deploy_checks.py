"""Checks of the deployment artifacts that no off-the-shelf validator makes: that the files the
Compose file mounts exist, that the Kubernetes manifests refer to each other consistently, that
the dashboard only queries metrics the mediator exports, that the collector's pipelines use what
they define. Run by scripts/validate-deploy (with PyYAML from its virtual environment):

    python validate_deploy_checks.py compose
    python validate_deploy_checks.py k8s BUILT.yaml NAME
    python validate_deploy_checks.py grafana
    python validate_deploy_checks.py otel

Each prints what it checked and exits 1 with the list of problems when there is any.
"""

import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/mediator.json"
COLLECTOR = ROOT / "deploy/otel-collector/otel-collector.yaml"
COLLECTOR_DEPLOYMENT = ROOT / "deploy/otel-collector/deployment.yaml"
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources"
DASHBOARD_PROVIDERS = ROOT / "deploy/grafana/provisioning/dashboards"
MEDIATOR_DEFAULTS = ROOT / "services/mediator/config.default.toml"
# MEDIATOR_ variables the mediator reads that are not configuration keys.
MEDIATOR_SPECIAL_ENV = {"MEDIATOR_CONFIG", "MEDIATOR_LOG"}

# Which metric names exist is checked against a running mediator's /metrics by the Rust test
# services/mediator/tests/operations.rs (every_metric_the_dashboard_queries_is_exported), in both
# directions; here only the dashboard's shape is checked.
METRIC_NAME = re.compile(r"\bmediator_[a-z0-9_]+")

# The mediator's environment in Compose, as operators are told it is.
COMPOSE_MEDIATOR_ENV = {
    "MEDIATOR_LISTEN": "0.0.0.0:3000",
    "MEDIATOR_PUBLIC_HTTP_ENDPOINT": "http://localhost:8080",
    "MEDIATOR_PUBLIC_WS_ENDPOINT": "ws://localhost:8080",
    "MEDIATOR_STORAGE__BACKEND": "redis",
    "MEDIATOR_STORAGE__REDIS__URL": "redis://redis:6379",
    "MEDIATOR_SHUTDOWN__GRACE_PERIOD_MS": "10000",
    "MEDIATOR_LOG__FORMAT": "json",
    "MEDIATOR_TELEMETRY__OTLP__ENDPOINT": "http://otel-collector:4318",
    "MEDIATOR_TELEMETRY__OTLP__PROTOCOL": "http/protobuf",
    "MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN": "0.0.0.0:9464",
}


class Problems:
    def __init__(self, what):
        self.what = what
        self.items = []
        self.checked = 0

    def check(self, ok, message):
        self.checked += 1
        if not ok:
            self.items.append(message)

    def finish(self):
        if self.items:
            print(f"{self.what}: {len(self.items)} problem(s):")
            for item in self.items:
                print(f"  - {item}")
            sys.exit(1)
        print(f"{self.what}: {self.checked} checks ok")


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def duration_seconds(text):
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(text))
    if not m or not any(m.groups()):
        return None
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


def env_map(environment):
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return {k: (None if v is None else str(v)) for k, v in (environment or {}).items()}


def check_mediator_env(p, env, where):
    """Every MEDIATOR_ variable names a key of the mediator's configuration (the built-in
    defaults list every key), with a value of the default's type."""
    with open(MEDIATOR_DEFAULTS, "rb") as f:
        defaults = tomllib.load(f)
    for name, value in env.items():
        if not name.startswith("MEDIATOR_") or name in MEDIATOR_SPECIAL_ENV:
            continue
        path = name[len("MEDIATOR_"):].lower().split("__")
        node = defaults
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        key = ".".join(path)
        p.check(node is not None and not isinstance(node, dict),
                f"{where}: {name} is not a setting of the mediator (no {key} in {MEDIATOR_DEFAULTS.name})")
        if node is None or value is None or "${" in str(value):
            continue
        if isinstance(node, bool):
            p.check(str(value).lower() in ("true", "false"), f"{where}: {name} is a boolean, got {value!r}")
        elif isinstance(node, int):
            p.check(re.fullmatch(r"\d+", str(value)) is not None, f"{where}: {name} is a number, got {value!r}")


# ---------------------------------------------------------------------------------------------
def check_compose():
    p = Problems("docker-compose.yml")
    doc = load_yaml(COMPOSE)
    p.check("version" not in doc, "no `version:` key (Compose Specification)")
    services = doc.get("services", {})
    named_volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        build = svc.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            p.check((ROOT / context / dockerfile).is_file(), f"{name}: build {context}/{dockerfile} is missing")
        for volume in svc.get("volumes", []):
            if isinstance(volume, dict):
                source, kind = volume.get("source"), volume.get("type")
            else:
                source, kind = volume.split(":", 1)[0], None
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                path = (ROOT / source).resolve()
                p.check(path.exists(), f"{name}: mounted {source} does not exist")
                p.check(str(path).startswith(str(ROOT)), f"{name}: mounted {source} is outside the repository")
            elif kind == "volume":
                p.check(source in named_volumes, f"{name}: volume {source} is not declared under volumes:")
        for dep in svc.get("depends_on", []) or []:
            p.check(dep in services, f"{name}: depends on unknown service {dep}")
        for secret in svc.get("secrets", []) or []:
            secret_name = secret if isinstance(secret, str) else secret.get("source")
            p.check(secret_name in (doc.get("secrets") or {}), f"{name}: unknown secret {secret_name}")
    for secret_name, secret in (doc.get("secrets") or {}).items():
        if "file" in secret:
            p.check((ROOT / secret["file"]).exists(), f"secret {secret_name}: file {secret['file']} is missing")

    mediator = services.get("mediator", {})
    p.check(mediator.get("build") is not None, "mediator is built from the repository")
    p.check((mediator.get("deploy") or {}).get("replicas") == 3, "mediator runs 3 replicas")
    p.check("ports" not in mediator, "mediator publishes no port (replicas are reached through lb)")
    env = env_map(mediator.get("environment"))
    check_mediator_env(p, env, "mediator")
    for key, value in COMPOSE_MEDIATOR_ENV.items():
        p.check(env.get(key) == value, f"mediator: {key} should be {value!r}, is {env.get(key)!r}")
    secret_ref = env.get("MEDIATOR_MASTER_SECRET") or ""
    p.check("${MEDIATOR_MASTER_SECRET:?" in secret_ref,
            "mediator: MEDIATOR_MASTER_SECRET comes from the operator's environment and is required")
    grace = env.get("MEDIATOR_SHUTDOWN__GRACE_PERIOD_MS") or "0"
    grace_ms = int(grace) if grace.isdigit() else 0
    stop = duration_seconds(mediator.get("stop_grace_period", "10s"))
    p.check(stop is not None and stop * 1000 > grace_ms,
            f"mediator: stop_grace_period ({mediator.get('stop_grace_period')}) exceeds the shutdown grace period ({grace_ms} ms)")
    dockerfile_env = dict(re.findall(r"\b(MEDIATOR_[A-Z0-9_]+)=(\S+)", (ROOT / "Dockerfile").read_text(encoding="utf-8")))
    p.check(len(dockerfile_env) > 0, "the Dockerfile sets the listen addresses")
    check_mediator_env(p, dockerfile_env, "Dockerfile ENV")
    redis_cmd = " ".join(str(x) for x in services.get("redis", {}).get("command", []))
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        p.check(flag in redis_cmd, f"redis: command has {flag}")
    p.check("ports" in services.get("lb", {}) and "8080:8080" in services["lb"]["ports"], "lb publishes 8080")
    p.finish()


# ---------------------------------------------------------------------------------------------
def pod_spec(resource):
    kind = resource.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return resource["spec"]["template"]
    if kind == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]
    return None


def check_k8s(built, name):
    p = Problems(f"kustomize build {name}")
    with open(built, encoding="utf-8") as f:
        resources = [r for r in yaml.safe_load_all(f) if r]
    p.check(len(resources) > 0, "the build has resources")
    by_kind = {}
    for r in resources:
        key = (r["kind"], r["metadata"]["name"])
        p.check(key not in by_kind, f"{key[0]}/{key[1]} appears once")
        by_kind[key] = r
    configmaps = {n for (k, n) in by_kind if k == "ConfigMap"}
    secrets = {n for (k, n) in by_kind if k == "Secret"}
    # Secrets that operators provide themselves (cert-manager and the like).
    external_secrets = {"mediator-tls"}

    pods = {}
    for (kind, rname), r in by_kind.items():
        template = pod_spec(r)
        if template is None:
            continue
        pods[(kind, rname)] = template
        spec = template["spec"]
        labels = template["metadata"].get("labels", {})
        selector = r["spec"].get("selector", {}).get("matchLabels", {})
        p.check(selector.items() <= labels.items(), f"{kind}/{rname}: selector matches its pod labels")
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    p.check(src["configMapRef"]["name"] in configmaps, f"{kind}/{rname}: envFrom ConfigMap {src['configMapRef']['name']} exists")
                if "secretRef" in src:
                    p.check(src["secretRef"]["name"] in secrets, f"{kind}/{rname}: envFrom Secret {src['secretRef']['name']} exists")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    s = ref["secretKeyRef"]
                    p.check(s["name"] in secrets, f"{kind}/{rname}: env {e['name']} Secret {s['name']} exists")
                    if s["name"] in secrets:
                        sec = by_kind[("Secret", s["name"])]
                        keys = set((sec.get("data") or {}).keys()) | set((sec.get("stringData") or {}).keys())
                        p.check(s["key"] in keys, f"{kind}/{rname}: env {e['name']} Secret {s['name']} has key {s['key']}")
                if "configMapKeyRef" in ref:
                    p.check(ref["configMapKeyRef"]["name"] in configmaps, f"{kind}/{rname}: env {e['name']} ConfigMap exists")
            ports = {port.get("name") for port in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                target = (c.get(probe) or {}).get("httpGet") or (c.get(probe) or {}).get("tcpSocket")
                if target and isinstance(target.get("port"), str):
                    p.check(target["port"] in ports, f"{kind}/{rname}: {probe} port {target['port']} is a named port")
        for v in spec.get("volumes", []):
            if "configMap" in v:
                p.check(v["configMap"]["name"] in configmaps, f"{kind}/{rname}: volume ConfigMap {v['configMap']['name']} exists")
            if "secret" in v:
                p.check(v["secret"]["secretName"] in secrets, f"{kind}/{rname}: volume Secret {v['secret']['secretName']} exists")

    def selects(selector):
        return [k for k, t in pods.items() if selector and selector.items() <= t["metadata"].get("labels", {}).items()]

    for (kind, rname), r in by_kind.items():
        if kind == "Service":
            p.check(len(selects(r["spec"].get("selector", {}))) > 0, f"Service/{rname}: selects some pods")
        if kind in ("PodDisruptionBudget",):
            p.check(len(selects(r["spec"]["selector"].get("matchLabels", {}))) > 0, f"{kind}/{rname}: selects some pods")
        if kind == "HorizontalPodAutoscaler":
            ref = r["spec"]["scaleTargetRef"]
            p.check((ref["kind"], ref["name"]) in by_kind, f"HPA/{rname}: target {ref['kind']}/{ref['name']} exists")
        if kind == "Ingress":
            for rule in r["spec"].get("rules", []):
                for path in rule["http"]["paths"]:
                    svc = path["backend"]["service"]
                    p.check(("Service", svc["name"]) in by_kind, f"Ingress/{rname}: backend Service {svc['name']} exists")
                    if ("Service", svc["name"]) in by_kind:
                        svc_ports = {x.get("name") for x in by_kind[("Service", svc["name"])]["spec"]["ports"]}
                        p.check(svc["port"].get("name") in svc_ports, f"Ingress/{rname}: backend port {svc['port']} exists")
            for tls in r["spec"].get("tls", []):
                p.check(tls["secretName"] in secrets | external_secrets, f"Ingress/{rname}: TLS secret {tls['secretName']} is known")

    # The mediator itself.
    mediator = by_kind.get(("Deployment", "mediator"))
    p.check(mediator is not None, "Deployment/mediator exists")
    if mediator:
        spec = mediator["spec"]["template"]["spec"]
        c = spec["containers"][0]
        config = {}
        for src in c.get("envFrom", []):
            if "configMapRef" in src and ("ConfigMap", src["configMapRef"]["name"]) in by_kind:
                config.update(by_kind[("ConfigMap", src["configMapRef"]["name"])].get("data", {}))
        env_names = {e["name"] for e in c.get("env", [])}
        check_mediator_env(p, config, "mediator ConfigMap")
        check_mediator_env(p, {e["name"]: e.get("value") for e in c.get("env", [])}, "mediator env")
        p.check("MEDIATOR_MASTER_SECRET" in env_names, "mediator: MEDIATOR_MASTER_SECRET from a Secret")
        instance = next((e for e in c.get("env", []) if e["name"] == "MEDIATOR_CLUSTER__INSTANCE_ID"), {})
        p.check(instance.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
                "mediator: MEDIATOR_CLUSTER__INSTANCE_ID is the pod's name")
        grace = config.get("MEDIATOR_SHUTDOWN__GRACE_PERIOD_MS", "10000")
        grace_ms = int(grace) if grace.isdigit() else 0
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        termination = spec.get("terminationGracePeriodSeconds", 30)
        p.check(termination > pre_stop + grace_ms / 1000,
                f"mediator: terminationGracePeriodSeconds ({termination}) > preStop sleep ({pre_stop} s) + shutdown grace ({grace_ms} ms)")
        ports = {port["name"]: port["containerPort"] for port in c.get("ports", [])}
        p.check(ports == {"http": 3000, "metrics": 9464}, f"mediator: ports http 3000 and metrics 9464 (got {ports})")
        p.check(config.get("MEDIATOR_LISTEN", "").endswith(":3000"), "mediator: listens on 3000")
        p.check(config.get("MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN", "").endswith(":9464"), "mediator: metrics on 9464")
        sc = c.get("securityContext", {})
        p.check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                and sc.get("capabilities", {}).get("drop") == ["ALL"], "mediator: locked-down container securityContext")
        p.check(spec.get("securityContext", {}).get("runAsNonRoot") is True, "mediator: runAsNonRoot")
        redis_url = config.get("MEDIATOR_STORAGE__REDIS__URL")
        url_from_secret = any(e["name"] == "MEDIATOR_STORAGE__REDIS__URL" and "secretKeyRef" in e.get("valueFrom", {})
                              for e in c.get("env", []))
        p.check(redis_url is not None or url_from_secret, "mediator: a Redis URL is configured")
        if redis_url and redis_url.startswith("redis://redis:"):
            p.check(("StatefulSet", "redis") in by_kind and ("Service", "redis") in by_kind,
                    "mediator: the in-cluster Redis it points at is deployed")
        if url_from_secret:
            p.check(redis_url is None, "mediator: the Redis URL has one source (the Secret)")

    # Generated from the one copy of each file.
    dashboard = by_kind.get(("ConfigMap", "mediator-grafana-dashboard"))
    p.check(dashboard is not None and dashboard["data"].get("mediator.json") == DASHBOARD.read_text(encoding="utf-8"),
            "the dashboard ConfigMap holds deploy/grafana/dashboards/mediator.json")
    collector = [r for (k, n), r in by_kind.items() if k == "ConfigMap" and n.startswith("otel-collector-config")]
    p.check(len(collector) == 1 and collector[0]["data"].get("otel-collector.yaml") == COLLECTOR.read_text(encoding="utf-8"),
            "the collector ConfigMap holds deploy/otel-collector/otel-collector.yaml")
    if name.endswith("managed-redis"):
        p.check(("StatefulSet", "redis") not in by_kind, "managed-redis: no Redis StatefulSet")
        p.check(not any(k == "Service" and n.startswith("redis") for (k, n) in by_kind), "managed-redis: no Redis Service")
    print(f"{name}: {len(resources)} resources: " + ", ".join(sorted(f"{k}/{n}" for (k, n) in by_kind)))
    p.finish()


# ---------------------------------------------------------------------------------------------
def walk_panels(panels):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def check_grafana():
    p = Problems("grafana")
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    p.check(bool(dashboard.get("uid")) and bool(dashboard.get("title")), "the dashboard has a uid and a title")
    panels = list(walk_panels(dashboard.get("panels", [])))
    used = set()
    exprs = 0
    ids = [panel.get("id") for panel in panels]
    p.check(len(ids) == len(set(ids)), "panel ids are unique")
    for panel in panels:
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "?")
        ds = panel.get("datasource") or {}
        p.check(ds.get("uid") == "prometheus", f"panel {title!r}: datasource uid prometheus")
        targets = panel.get("targets", [])
        p.check(len(targets) > 0, f"panel {title!r}: has queries")
        for target in targets:
            expr = target.get("expr", "")
            exprs += 1
            p.check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"),
                    f"panel {title!r}: balanced brackets in {expr}")
            names = set(METRIC_NAME.findall(expr))
            p.check(len(names) > 0, f"panel {title!r}: queries a mediator metric: {expr}")
            used |= names
            if "histogram_quantile" in expr:
                p.check("_bucket" in expr and "le" in expr, f"panel {title!r}: quantile over buckets by le")
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else (query or "")
        p.check(not query or METRIC_NAME.search(query), f"variable {var.get('name')}: queries a mediator metric")
        if var.get("datasource"):
            p.check(var["datasource"].get("uid") == "prometheus", f"variable {var.get('name')}: datasource uid prometheus")
    shown = [panel for panel in panels if panel.get("type") != "row"]
    print(f"grafana: {len(shown)} panels, {exprs} queries over {len(used)} series names")

    datasources = [d for f in sorted(DATASOURCES.glob("*.y*ml")) for d in (load_yaml(f) or {}).get("datasources", [])]
    uids = {d.get("uid"): d for d in datasources}
    p.check(uids.get("prometheus", {}).get("url") == "http://prometheus:9090", "datasource prometheus at http://prometheus:9090")
    p.check(uids.get("prometheus", {}).get("type") == "prometheus", "datasource prometheus is of type prometheus")
    p.check(any(d.get("type") == "jaeger" and d.get("url") == "http://jaeger:16686" for d in datasources),
            "a Jaeger datasource at http://jaeger:16686")
    compose = load_yaml(COMPOSE)
    mounts = {}
    for volume in compose["services"]["grafana"].get("volumes", []):
        if isinstance(volume, str) and volume.startswith("./"):
            source, target = volume.split(":")[:2]
            mounts[target] = (ROOT / source).resolve()
    providers = [d for f in sorted(DASHBOARD_PROVIDERS.glob("*.y*ml")) for d in (load_yaml(f) or {}).get("providers", [])]
    p.check(len(providers) > 0, "a dashboard provider is provisioned")
    for provider in providers:
        path = provider.get("options", {}).get("path")
        p.check(mounts.get(path) == DASHBOARD.parent.resolve(),
                f"dashboard provider path {path} is where docker-compose.yml mounts deploy/grafana/dashboards")
    p.finish()


# ---------------------------------------------------------------------------------------------
def check_otel():
    p = Problems("otel collector")
    config = load_yaml(COLLECTOR)
    sections = {k: set((config.get(k) or {}).keys()) for k in ("receivers", "processors", "exporters", "extensions", "connectors")}
    service = config.get("service") or {}
    for ext in service.get("extensions", []):
        p.check(ext in sections["extensions"], f"extension {ext} is defined")
    pipelines = service.get("pipelines") or {}
    p.check({"traces", "metrics"} <= set(pipelines), "traces and metrics pipelines")
    for pname, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                p.check(component in sections[kind] or component in sections["connectors"],
                        f"pipeline {pname}: {kind[:-1]} {component} is defined")
        p.check(len(pipeline.get("receivers", [])) > 0 and len(pipeline.get("exporters", [])) > 0,
                f"pipeline {pname}: has receivers and exporters")
        processors = pipeline.get("processors", [])
        if "memory_limiter" in processors:
            p.check(processors[0] == "memory_limiter", f"pipeline {pname}: memory_limiter comes first")
    protocols = (config.get("receivers", {}).get("otlp") or {}).get("protocols", {})
    p.check(str((protocols.get("grpc") or {}).get("endpoint", "")).endswith(":4317"), "OTLP gRPC on 4317")
    p.check(str((protocols.get("http") or {}).get("endpoint", "")).endswith(":4318"), "OTLP HTTP on 4318")
    # ${env:NAME} references must be set wherever the file is used.
    referenced = set(re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", COLLECTOR.read_text(encoding="utf-8")))
    compose_env = env_map(load_yaml(COMPOSE)["services"]["otel-collector"].get("environment"))
    deployment = load_yaml(COLLECTOR_DEPLOYMENT)
    k8s_env = {e["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    for var in sorted(referenced):
        p.check(var in compose_env, f"{var} is set for the collector in docker-compose.yml")
        p.check(var in k8s_env, f"{var} is set for the collector in deploy/otel-collector/deployment.yaml")
    p.finish()


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "compose":
        check_compose()
    elif command == "k8s" and len(sys.argv) == 4:
        check_k8s(sys.argv[2], sys.argv[3])
    elif command == "grafana":
        check_grafana()
    elif command == "otel":
        check_otel()
    else:
        sys.exit(__doc__)
