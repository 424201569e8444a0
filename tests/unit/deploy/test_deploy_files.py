"""Deployment files stay consistent with the wire contract and are safe to apply (issue 19, part 6).

No Docker engine or cluster here: the compose file, the Dockerfile and the k8s manifests are
linted as data (YAML) against what the code serves and what the docs promise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

from processor.api.openapi import spec

ROOT = Path(__file__).resolve().parents[3]
CONTRACT_ENV = {"KAFKA_BOOTSTRAP_SERVERS", "STATE_DIR", "WEB_PORT", "ADMIN_JWT_SECRET"}
KAFKA_FILE_ENV = {"KAFKA_SSL_CA_LOCATION", "KAFKA_SSL_CERTIFICATE_LOCATION", "KAFKA_SSL_KEY_LOCATION",
                  "KAFKA_SASL_PASSWORD_FILE"}
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _k8s_docs() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted((ROOT / "deploy" / "k8s").glob("*.y*ml"))
            for d in yaml.safe_load_all(p.read_text()) if d]


def _worker_k8s() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "worker.yaml").read_text())
            if d and d.get("metadata", {}).get("name") == "segment-automation"}


def _public_get_paths() -> set[str]:
    """Routes the worker serves without a token (the documented public list)."""
    return {p for p, ops in spec()["paths"].items() if ops.get("get", {}).get("security") == []}


def _pinned(image: str) -> bool:
    """An explicit tag that is not `latest` (or a digest)."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def _pod_specs() -> list[tuple[str, dict]]:
    out = []
    for fname, d in _k8s_docs():
        pod = d.get("spec", {}).get("template", {}).get("spec") or \
            d.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
        if pod:
            out.append((f"{fname}:{d['kind']}/{d['metadata']['name']}", pod))
    return out


# ----------------------------------------------------------------------------------- compose


def test_compose_has_kafka_topics_workers_and_prometheus() -> None:
    """docker-compose.yml: KRaft Kafka, a one-shot `topics create`, two workers with their own
    state volume and the contract env variables, and Prometheus scraping both."""
    svc = _compose()["services"]
    assert {"kafka", "topics", "worker-1", "worker-2", "prometheus"} <= set(svc)
    assert svc["kafka"]["image"].startswith("apache/kafka")
    assert svc["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert svc["topics"]["command"] == ["topics", "create"]
    for name in ("worker-1", "worker-2"):
        env = svc[name]["environment"]
        assert CONTRACT_ENV <= set(env), name
        assert svc[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert svc["worker-1"]["volumes"] != svc["worker-2"]["volumes"]
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert set(prom["scrape_configs"][0]["static_configs"][0]["targets"]) == {"worker-1:6066", "worker-2:6066"}
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        out = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
                             capture_output=True, text=True,
                             env={**os.environ, "ADMIN_JWT_SECRET": "compose-config-check-" + "0123456789" * 2})
        assert out.returncode == 0, out.stderr


def test_compose_every_worker_advertises_its_own_name() -> None:
    """Each worker's WEB_CANONICAL_HOST is its own service/host name, distinct across workers, and
    never taken from the shell running compose (`${HOSTNAME}` is the same for every service)."""
    svc = _compose()["services"]
    workers = {n: s for n, s in svc.items() if s.get("command") == ["worker"]}
    assert len(workers) >= 2
    hosts = {}
    for name, s in workers.items():
        host = str(s["environment"].get("WEB_CANONICAL_HOST", ""))
        assert host and "$" not in host, (name, host)
        assert host in (name, s.get("hostname")), (name, host)
        hosts[name] = host
    assert len(set(hosts.values())) == len(hosts), hosts
    # the name the peers use is the one Prometheus scrapes
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t.split(":")[0] for t in prom["scrape_configs"][0]["static_configs"][0]["targets"]}
    assert targets == set(hosts.values())


def test_compose_jwt_secret_is_required_and_images_are_pinned() -> None:
    """No default admin secret: compose refuses to start without ADMIN_JWT_SECRET
    (`${VAR:?message}`). Every image has an explicit version tag, never `latest`."""
    svc = _compose()["services"]
    with_secret = [n for n, s in svc.items() if "ADMIN_JWT_SECRET" in (s.get("environment") or {})]
    assert with_secret
    for name in with_secret:
        value = str(svc[name]["environment"]["ADMIN_JWT_SECRET"])
        assert re.fullmatch(r"\$\{ADMIN_JWT_SECRET:\?[^}]+\}", value), (name, value)
    for name, s in svc.items():
        if "image" in s:
            assert _pinned(s["image"]), (name, s["image"])
        else:
            assert "build" in s, name
    built = {s["image"] for s in svc.values() if "build" in s}
    assert built == {f"segment-automation:{VERSION}"}


def test_compose_optional_services_sit_behind_profiles() -> None:
    """A Schema Registry (Confluent REST API) only with `--profile registry`, Grafana only with
    `--profile monitoring`; the default stack depends on neither."""
    svc = _compose()["services"]
    registries = [n for n, s in svc.items() if "registry" in (s.get("profiles") or [])]
    assert len(registries) == 1
    reg = svc[registries[0]]
    assert "karapace" in reg["image"] and str(reg["environment"]["KARAPACE_PORT"]) == "8081"
    assert any(str(p).endswith(":8081") for p in reg["ports"])
    assert any("monitoring" in (s.get("profiles") or []) and "grafana" in s["image"] for s in svc.values())
    optional = {n for n, s in svc.items() if s.get("profiles")}
    for name, s in svc.items():
        if name in optional:
            continue
        deps = s.get("depends_on") or {}
        assert not optional & set(deps), (name, deps)


def test_compose_mounted_files_exist_and_prometheus_loads_the_alerts() -> None:
    """Every bind mount points at a file in the repo; Prometheus's rule_files resolve, inside the
    container, to the mounted alert rules."""
    svc = _compose()["services"]
    for name, s in svc.items():
        for v in s.get("volumes") or []:
            src = str(v).split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), (name, src)
    mounts = {c: ROOT / h for h, c in (str(v).split(":")[:2] for v in svc["prometheus"]["volumes"])}
    assert mounts["/etc/prometheus/prometheus.yml"] == ROOT / "deploy" / "prometheus.yml"
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())["rule_files"]
    on_host = set()
    for r in rules:  # relative to the config file's directory, as Prometheus resolves them
        path = str(Path("/etc/prometheus") / r)
        mount = next(c for c in mounts if path == c or path.startswith(c + "/"))
        on_host.add((mounts[mount] / path[len(mount):].lstrip("/")).resolve())
    assert on_host == {(ROOT / "deploy" / "monitoring" / "alerts.yml").resolve()}


# -------------------------------------------------------------------------------- Dockerfile


def _stages() -> list[list[str]]:
    """The Dockerfile's stages as lists of logical lines (continuations joined)."""
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_multi_stage_pinned_non_root_with_healthcheck() -> None:
    """Two stages on a base pinned to a Python patch release; the runtime stage runs as a numeric
    non-root user, has a HEALTHCHECK on a served public route, and installs no dev dependency
    (the wheel with constraints.txt, no extras: no test tools, no embedded broker)."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    stages = _stages()
    assert len(stages) >= 2
    for st in stages:
        base = st[0].split()[1]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    build, final = "\n".join(stages[0]), "\n".join(stages[-1])
    assert re.search(r"pip (wheel|install)[^\n]*-c constraints\.txt[^\n]*\.whl", build), build
    code = "\n".join(line for st in stages for line in st)  # comments left out
    assert not re.search(r"\[(dev|embedded)", code) and "pytest" not in code and "calfkit" not in code
    user = re.search(r"^USER (\S+)", final, re.M)
    assert user and re.fullmatch(r"[1-9]\d*(:\d+)?", user.group(1)), user
    hc = re.search(r"^HEALTHCHECK .*", final, re.M)
    assert hc and "/healthz" in hc.group(0) and "/healthz" in _public_get_paths()
    assert re.search(r'^ENTRYPOINT \["segment-automation"\]', final, re.M)  # the installed console script
    assert "COPY processor" not in final  # runs the installed wheel, not a source copy


# ------------------------------------------------------------------------------------- k8s


def test_k8s_statefulset_probes_and_volume() -> None:
    """The StatefulSet keeps RocksDB on a per-pod volume, probes served public routes, and a
    headless Service gives each pod a stable name."""
    kinds = _worker_k8s()
    sts = kinds["StatefulSet"]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    public = _public_get_paths()
    ports = {p["name"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in c:
            assert c[probe]["httpGet"]["path"] in public, probe
            assert c[probe]["httpGet"]["port"] in ports, probe
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/state"] == "state"
    assert {e["name"] for e in c["env"]} >= {"STATE_DIR", "WEB_PORT", "ADMIN_JWT_SECRET"}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    assert kinds["Service"]["spec"]["clusterIP"] == "None"
    assert "KAFKA_BOOTSTRAP_SERVERS" in kinds["ConfigMap"]["data"]


def test_k8s_headless_service_keeps_not_ready_peers_and_names_them() -> None:
    """The headless Service publishes not-ready pods (peers in recovery stay resolvable), is the
    StatefulSet's serviceName, selects its pods, and each pod advertises its name under it."""
    kinds = _worker_k8s()
    sts, svc = kinds["StatefulSet"], kinds["Service"]
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["WEB_CANONICAL_HOST"]["value"] == f"$(POD_NAME).{svc['metadata']['name']}"
    names = list(env)
    assert names.index("POD_NAME") < names.index("WEB_CANONICAL_HOST")  # $(VAR) needs it defined first


def test_k8s_pod_disruption_budget_covers_the_workers() -> None:
    kinds = _worker_k8s()
    pdb, sts = kinds["PodDisruptionBudget"], kinds["StatefulSet"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    replicas = sts["spec"]["replicas"]
    if "maxUnavailable" in pdb["spec"]:
        assert 1 <= int(pdb["spec"]["maxUnavailable"]) < replicas
    else:
        assert 1 <= int(pdb["spec"]["minAvailable"]) < replicas


def test_k8s_worker_runs_non_root_on_a_read_only_root_filesystem() -> None:
    """Pod: runAsNonRoot with a non-zero uid; every container (init included): read-only root
    filesystem, no privilege escalation, no capabilities, a writable emptyDir on /tmp; the
    worker's only other writable path is its state volume."""
    sts = _worker_k8s()["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and int(sc["runAsUser"]) > 0 and int(sc["fsGroup"]) > 0
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in pod.get("initContainers", []) + pod["containers"]:
        csc = c["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True, c["name"]
        assert csc["allowPrivilegeEscalation"] is False, c["name"]
        assert csc["capabilities"]["drop"] == ["ALL"], c["name"]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], c["name"]
        writable = {p for p, m in mounts.items() if not m.get("readOnly")}
        assert writable <= {"/tmp", "/state"}, (c["name"], writable)
    # the image's user is the one the pod runs as
    assert f"USER {sc['runAsUser']}" in (ROOT / "deploy" / "Dockerfile").read_text()


def test_k8s_kafka_secrets_are_mounted_files_not_values() -> None:
    """TLS/SASL material comes from a Secret mounted read-only: each *_LOCATION / *_FILE variable
    points into that mount, in the init container too; no password sits in the ConfigMap or an
    env value."""
    kinds = _worker_k8s()
    pod = kinds["StatefulSet"]["spec"]["template"]["spec"]
    secret_vols = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    assert secret_vols
    for vol in secret_vols.values():
        assert vol["defaultMode"] & 0o007 == 0, oct(vol["defaultMode"])  # not world-readable
    for c in pod.get("initContainers", []) + pod["containers"]:
        secret_mounts = [m for m in c["volumeMounts"] if m["name"] in secret_vols]
        assert secret_mounts and all(m.get("readOnly") is True for m in secret_mounts), c["name"]
        env = {e["name"]: e for e in c["env"]}
        files = {n: e["value"] for n, e in env.items() if n in KAFKA_FILE_ENV}
        assert {"KAFKA_SSL_CA_LOCATION", "KAFKA_SASL_PASSWORD_FILE"} <= set(files), c["name"]
        for name, path in files.items():
            assert any(path.startswith(m["mountPath"] + "/") for m in secret_mounts), (c["name"], name, path)
        assert "KAFKA_SASL_PASSWORD" not in env and "KAFKA_SSL_KEY_PASSWORD" not in env, c["name"]
    cm = kinds["ConfigMap"]["data"]
    assert not [k for k in cm if "PASSWORD" in k or "SECRET" in k]
    assert cm["KAFKA_SECURITY_PROTOCOL"] in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    if cm["KAFKA_SECURITY_PROTOCOL"].startswith("SASL"):
        assert cm["KAFKA_SASL_MECHANISM"] in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        assert cm["KAFKA_SASL_USERNAME"]


def test_k8s_images_carry_the_release_version() -> None:
    """Every container image in deploy/k8s/ has a version tag (never `latest`); ours is the
    package's version, so an upgrade is a visible change of the manifest."""
    pods = _pod_specs()
    assert pods
    for where, pod in pods:
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert _pinned(c["image"]), (where, c["image"])
            if c["image"].rpartition(":")[0].endswith("segment-automation"):
                assert c["image"].endswith(f":{VERSION}"), (where, c["image"])


# ------------------------------------------------------------------------------------ docs


def test_every_deploy_env_variable_is_documented() -> None:
    """Each variable the compose workers or the k8s manifests set appears in README's
    configuration table or in docs/deploy.md."""
    docs = (ROOT / "README.md").read_text() + (ROOT / "docs" / "deploy.md").read_text()
    names: set[str] = set()
    svc = _compose()["services"]
    for s in svc.values():
        if s.get("command") in (["worker"], ["topics", "create"]):
            names |= set(s["environment"])
    for _, d in _k8s_docs():
        if d["kind"] == "ConfigMap":
            names |= set(d["data"])
    for _, pod in _pod_specs():
        for c in pod.get("initContainers", []) + pod["containers"]:
            names |= {e["name"] for e in c.get("env", [])}
    names -= {"POD_NAME"}  # k8s-internal, only to build WEB_CANONICAL_HOST
    assert {"REPLICATION_FACTOR", "WEB_HOST", "WEB_CANONICAL_HOST"} <= names
    missing = sorted(n for n in names if f"`{n}`" not in docs)
    assert not missing, missing
