"""Deployment files stay consistent with the wire contract."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
CONTRACT_ENV = {"KAFKA_BOOTSTRAP_SERVERS", "STATE_DIR", "WEB_PORT", "ADMIN_JWT_SECRET"}


def test_compose_has_kafka_topics_workers_and_prometheus() -> None:
    """docker-compose.yml: KRaft Kafka, a one-shot `topics create`, two workers with their own
    state volume and the contract env variables, and Prometheus scraping both."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = doc["services"]
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


def test_k8s_statefulset_probes_and_volume() -> None:
    """The StatefulSet keeps RocksDB on a per-pod volume, probes /healthz and /readyz, and a
    headless Service gives each pod a stable name."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "worker.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    sts = kinds["StatefulSet"]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["volumeMounts"][0]["mountPath"] == "/state"
    assert {e["name"] for e in c["env"]} >= {"STATE_DIR", "WEB_PORT", "ADMIN_JWT_SECRET"}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    assert kinds["Service"]["spec"]["clusterIP"] == "None"
    assert "KAFKA_BOOTSTRAP_SERVERS" in kinds["ConfigMap"]["data"]
