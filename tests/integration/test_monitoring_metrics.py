"""A running worker exports what the alert rules and the dashboard read (deploy/monitoring/)."""

from __future__ import annotations

import json
import tomllib
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.harness import Cluster, eventually

ROOT = Path(__file__).resolve().parents[2]


def _samples(base: str) -> dict[str, list]:
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_ready_worker_exports_ready_and_build_info(cluster: Cluster) -> None:
    """The warmed-up worker answers /readyz 200 and exports segment_ready 1, and
    segment_build_info carries the package version pyproject.toml declares."""
    base = cluster.workers[0].url
    with urllib.request.urlopen(f"{base}/readyz", timeout=10) as resp:
        assert resp.status == 200 and json.loads(resp.read())["ready"] is True
    samples = _samples(base)
    assert [s.value for s in samples["segment_ready"]] == [1.0]
    (info,) = samples["segment_build_info"]
    assert info.labels["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert info.labels["faust_version"].startswith("0.15.")
    # the lag gauge covers every partition this worker owns (all of them here) once it has
    # committed an offset there (Faust commits every second)
    s = cluster.settings
    want = {(s.topics.user_events, str(p)) for p in range(s.partitions)}

    def owned() -> set[tuple[str, str]]:
        return {(x.labels["topic"], x.labels["partition"]) for x in _samples(base).get("segment_consumer_lag", [])}

    eventually(lambda: want <= owned(), timeout=30, what="segment_consumer_lag for every user-event partition")
