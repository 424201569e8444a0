"""One real worker process over users written straight into its RocksDB partitions: the steps the
backfill, bulk-rules and single-command benches share (start, wait until ready, stop, find the
table's partitions, write users into them). Not a bench itself.
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
from typing import Iterable

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
