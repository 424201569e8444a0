"""Monitoring files (deploy/monitoring/) match the metrics a worker exports (issue 19, part 6).

promtool (Debian's `prometheus` package; .ci/run installs it) checks the rules and runs their
unit tests (alerts_test.yml); without it those two tests skip, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from processor.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
MON = ROOT / "deploy" / "monitoring"
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool not installed (apt-get install -y prometheus); .ci/run installs it"


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load((MON / "alerts.yml").read_text())["groups"] for r in g["rules"]]


def _dashboard() -> dict:
    return json.loads((MON / "dashboard.json").read_text())


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def _exported_names() -> set[str]:
    """Every series name a fresh worker registry exposes, parsed from its /metrics text."""
    m = Metrics()
    # labelled metrics expose samples only once a child exists: touch one of each
    m.events.labels("USER_UPDATED", "OK").inc()
    m.changes.labels("ADDED", "USER_UPDATED").inc()
    m.commands.labels("ACCEPTED", "").inc()
    m.dead_letters.labels("DECODE_ERROR").inc()
    m.lag.labels("t", "0").set(1)
    m.outbox_phase.labels("ack").observe(0.01)
    m.gc_pause.labels("2").observe(0.001)
    m.dead_letter_blocked.labels("t", "0").set(0)
    m.input_held.labels("t", "0").set(0)
    m.observe_api("GET", "/x", 200, 0.01)
    return {s.name for fam in text_string_to_metric_families(m.render().decode()) for s in fam.samples}


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(segment_[a-z_]+)\b", expr))


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_check_rules() -> None:
    out = subprocess.run([PROMTOOL, "check", "rules", str(MON / "alerts.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(_rules())} rules found" in out.stdout + out.stderr


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_alert_unit_tests() -> None:
    """alerts_test.yml: each alert fires on the series meant to fire it, not on healthy ones."""
    out = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=MON, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    tested = set(re.findall(r"alertname: (\w+)", (MON / "alerts_test.yml").read_text()))
    assert tested == {r["alert"] for r in _rules()}  # every alert has a test


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_compose_prometheus_config_is_valid() -> None:
    out = subprocess.run([PROMTOOL, "check", "config", str(ROOT / "deploy" / "prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alerts_cover_the_required_signals() -> None:
    """Consumer lag, dead letters by code, any PROCESSING_ERROR, outbox wait p99, readiness."""
    by_name = {r["alert"]: r for r in _rules()}
    exprs = {n: r["expr"] for n, r in by_name.items()}
    assert any("segment_consumer_lag" in e for e in exprs.values())
    dl = [n for n, e in exprs.items() if "segment_dead_letters_total" in e and "by (code)" in e]
    assert dl and all("code" in by_name[n]["annotations"]["summary"] for n in dl)
    pe = [n for n, e in exprs.items() if 'code="PROCESSING_ERROR"' in e]
    assert pe and by_name[pe[0]]["labels"]["severity"] == "critical" and "for" not in by_name[pe[0]]
    assert any("histogram_quantile(0.99" in e and "segment_outbox_wait_seconds_bucket" in e for e in exprs.values())
    assert any("segment_ready" in e for e in exprs.values())
    assert any("segment_input_held" in e and "segment_dead_letter_blocked" in e for e in exprs.values())
    for r in by_name.values():
        assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    """A typo in a metric name would make an alert silently never fire: every name used exists in
    the worker's own exposition."""
    exported = _exported_names()
    used = set()
    for e in [r["expr"] for r in _rules()] + _dashboard_exprs():
        used |= _metric_names(e)
    used |= _metric_names(json.dumps(_dashboard()["templating"]))
    assert used, "no metric referenced"
    assert used - exported == set(), sorted(used - exported)
    # and the dashboard shows the main families
    dash = " ".join(_dashboard_exprs())
    for name in ("segment_ready", "segment_build_info", "segment_consumer_lag", "segment_dead_letters_total",
                 "segment_outbox_wait_seconds_bucket", "segment_user_events_total"):
        assert name in dash, name


def test_dashboard_is_importable_json() -> None:
    """Grafana dashboard: unique panel ids, every query on the datasource variable, panels inside
    the 24-column grid; provisioning files point at it."""
    d = _dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    assert any(v["type"] == "datasource" and v["name"] == "datasource" for v in d["templating"]["list"])
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            assert t["expr"].strip(), p["title"]
    prov = yaml.safe_load((MON / "grafana" / "dashboards" / "segment-automation.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_build_info_and_ready_are_exported() -> None:
    """segment_build_info{version,faust_version,python} 1 with this package's version (as
    pyproject.toml declares it), faust's and Python's; segment_ready starts at 0."""
    import faust

    fams = {f.name: f for f in text_string_to_metric_families(Metrics().render().decode())}
    (info,) = fams["segment_build_info"].samples
    assert info.name == "segment_build_info" and info.value == 1
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert info.labels == {"version": version, "faust_version": faust.__version__,
                           "python": "%d.%d.%d" % sys.version_info[:3]}
    (ready,) = fams["segment_ready"].samples
    assert ready.value == 0
