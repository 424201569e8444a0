"""Steps the benches share. Not a bench itself.

- One real worker process over users written straight into its RocksDB partitions (backfill,
  bulk-rules and single-command benches): start, wait until ready, stop, find the table's
  partitions, write users into them.
- On a tests/support/harness.py Cluster (members, people and preview-load benches): a managed
  segment whose rule takes the department Sales.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any, Iterable

from rocksdict import Options, Rdict

from processor.state.keys import user_key
from processor.state.user_state import UserState, encode_state


def partition_for(key: bytes, partitions: int) -> int:
    """Spread users over the partitions (a backfill scans every partition, so any spread works)."""
    return zlib.crc32(key) % partitions


def ready(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
        return json.load(r)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "worker died"
        try:
            if ready(url)["ready"]:
                return
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(0.5)
    raise TimeoutError("worker not ready")


def start_worker(env: dict[str, str], log: Path, level: str = "info") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "processor", "worker", "-l", level], env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def table_partitions(state_dir: Path) -> dict[int, Path]:
    """The users table's RocksDB partitions a (stopped) worker created under ``state_dir``."""
    return {int(m.group(1)): p for p in state_dir.rglob("users-*.db")
            if (m := re.search(r"users-(\d+)\.db$", p.name))}


def write_users(dbs: dict[int, Path], partitions: int, states: Iterable[UserState]) -> None:
    """Store each state in its partition's RocksDB, as the worker would have stored it."""
    opened = {p: Rdict(str(path), Options(raw_mode=True)) for p, path in dbs.items()}
    try:
        for st in states:
            key = f"{st.site_id}:{st.user_id}".encode()
            opened[partition_for(key, partitions)][user_key(st.site_id, st.user_id)] = encode_state(st)
    finally:
        for db in opened.values():
            db.close()


def sales_segment(cluster: Any, site: str, segment: str, name: str, timeout: float) -> None:
    """Create ``segment`` on ``cluster`` (a tests/support/harness.py Cluster), manage it and give it
    rule "r" (department equals Sales); return once the three commands are decided."""
    from tests.support.harness import make_command

    cmds = [make_command(site, "UpsertSegment", segment_id=segment, name=name),
            make_command(site, "EnableSegmentAutomation", segment_id=segment),
            make_command(site, "CreateRule", rule_id="r", segment_id=segment, name="r",
                         condition={"field": "department", "op": "equals", "value": "Sales"})]
    for cmd in cmds:
        cluster.producer.command(cmd)
    cluster.producer.flush()
    cluster.wait_results([x.command_id for x in cmds], timeout)
