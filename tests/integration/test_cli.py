"""The CLI on the same code paths: help, publishing command files, and the dev runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.harness import Cluster


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


def test_help_lists_the_contract_commands() -> None:
    """`python -m processor --help` lists worker, topics, dev and commands."""
    out = _cli("--help")
    assert out.returncode == 0
    for name in ("worker", "topics", "dev", "commands"):
        assert name in out.stdout


def test_publish_yaml_file_prints_results(cluster: Cluster, site: str, tmp_path: Path) -> None:
    """`commands publish FILE` sends every command, waits, prints results; exit 1 if any is rejected."""
    f = tmp_path / "cmds.yaml"
    f.write_text(f"""
site_id: {site}
actor: {{user_id: ops, roles: [site_admin]}}
commands:
  - UpsertSegment: {{segment_id: sales, name: Sales}}
  - EnableSegmentAutomation: {{segment_id: sales}}
  - CreateRule:
      rule_id: r1
      segment_id: sales
      name: Sales
      condition: {{field: department, op: equals, value: Sales}}
""")
    env = {"KAFKA_BOOTSTRAP_SERVERS": cluster.settings.bootstrap_servers}
    out = _cli("commands", "publish", str(f), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("ACCEPTED") == 3

    bad = tmp_path / "bad.json"
    bad.write_text('{"site_id": "%s", "actor": {"user_id": "t", "roles": ["teacher"]}, '
                   '"commands": [{"DeleteRule": {"rule_id": "r1"}}]}' % site)
    out = _cli("commands", "publish", str(bad), env=env)
    assert out.returncode == 1
    assert "REJECTED" in out.stdout and "FORBIDDEN" in out.stdout


def test_publish_reports_malformed_file(tmp_path: Path) -> None:
    """A command file with an unknown command type fails before anything is sent."""
    f = tmp_path / "x.yaml"
    f.write_text("site_id: s\ncommands:\n  - CreateRuel: {rule_id: r}\n")
    out = _cli("commands", "publish", str(f), env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert out.returncode != 0
    assert "INVALID_COMMAND" in out.stderr


def test_dev_runner_smoke(tmp_path: Path) -> None:
    """`make run`'s command seeds the product-doc example and ends with bob alone in Sales."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "STATE_DIR", "WEB_PORT")}
    out = subprocess.run([sys.executable, "-m", "processor", "dev", "--once", "--timeout", "120"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: segment sales = ['bob']" in out.stdout
    assert "ADDED" in out.stdout and "REMOVED" in out.stdout
