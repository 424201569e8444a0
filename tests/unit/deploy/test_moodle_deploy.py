"""deploy/k8s/moodle-connector.yaml runs the connector's commands as the CLI defines them."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from processor.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_sync_deployment_and_resync_reconcile_cronjobs() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d
            for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "moodle-connector.yaml").read_text())}
    sync = docs[("Deployment", "moodle-sync")]["spec"]["template"]["spec"]["containers"][0]
    assert sync["args"] == ["moodle", "sync"]
    assert sync["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sync["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config = docs[("ConfigMap", "moodle-connector")]["data"]
    assert {"MOODLE_URL", "MOODLE_SITE_ID", "API_URL"} <= set(config)
    assert sync["ports"][0]["containerPort"] == int(config["MOODLE_SYNC_PORT"])
    for name, command in (("moodle-resync", "resync"), ("moodle-reconcile", "reconcile")):
        job = docs[("CronJob", name)]["spec"]
        assert job["concurrencyPolicy"] == "Forbid"
        c = job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert c["args"][:2] == ["moodle", command]
        assert {e["name"] for e in c["env"]} == {"MOODLE_TOKEN", "ADMIN_JWT_SECRET"}
        # every argument is one the CLI accepts
        out = CliRunner().invoke(main, [*c["args"], "--help"])
        assert out.exit_code == 0, out.output
