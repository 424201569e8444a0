"""Worker memory under 200,000 rejected commands (issue 17), and after a restart. Not a test.

    .venv/bin/python bench/command_memory_bench.py [--commands 200000] [--live 4000]
        [--mode one-site|many-sites|both] [--window N] [--out FILE]

Starts the embedded broker and one real worker and samples its RSS
(``tests.support.harness.proc_memory_kb``) as rejected commands pile up, in three phases:

1. live: ``--live`` commands produced to the commands topic and decided by the worker
   (DeleteRule of a rule that does not exist: REJECTED NOT_FOUND), all for one site or each for
   its own site. On tansu a decision takes ~50-100 ms (each waits for the catalog log's fetch),
   so 200,000 of them would take hours.
2. log: the rest up to ``--commands`` appended to the catalog topic directly, byte for byte
   what a worker writes for such a decision (CatalogEntry of a REJECTED command with its source
   partition and offset); the running worker folds them as it folds its own decisions. This is
   the memory that grew per command (the registry); the decision path's own buffers are
   measured in phase 1.
3. restart: the worker is stopped and started again on the same state dir; it re-reads the
   whole catalog log (every entry of phases 1 and 2) before it is ready.

The baseline is the worker's RSS after warm-up. Writes bench/results/command_memory_bench.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness lives in tests/support, beside the package

from aiokafka.partitioner import murmur2  # noqa: E402

from processor.catalog.entry import CatalogEntry  # noqa: E402
from processor.contract.codec import encode_command  # noqa: E402
from processor.contract.models import Actor, Command  # noqa: E402
from tests.support.harness import Cluster, WorkerProcess, proc_memory_kb  # noqa: E402

ADMIN = Actor("bench", ("site_admin",))


def readyz(w: WorkerProcess) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{w.url}/readyz", timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as err:
        return json.loads(err.read())
    except OSError:
        return {}


def rss_mib(w: WorkerProcess) -> float:
    assert w.proc is not None
    return round(proc_memory_kb(w.proc.pid)["VmRSS"] / 1024, 1)


def peak_mib(w: WorkerProcess) -> float:
    assert w.proc is not None
    return round(proc_memory_kb(w.proc.pid)["VmHWM"] / 1024, 1)


def wait_ready(c: Cluster, w: WorkerProcess, timeout: float = 1800) -> float:
    t0 = time.monotonic()
    c.wait(lambda: readyz(w).get("ready") is True, timeout, "worker ready")
    return time.monotonic() - t0


def warm_up(c: Cluster) -> None:
    """One accepted command per commands partition: every partition assigned and consumed."""
    ids = []
    for p in range(c.settings.command_partitions):
        cmd = Command(f"warm-{uuid.uuid4().hex[:8]}", f"warm-{p}", int(time.time() * 1000),
                      Actor("bench", ("system",)), "UpsertSegment", {"segment_id": "s", "name": "w"})
        c.producer.raw(c.settings.topics.commands, cmd.site_id.encode(), encode_command(cmd), partition=p)
        ids.append(cmd.command_id)
    c.producer.flush()
    c.wait_results(ids, 180)


def flood_command(run_id: str, mode: str, i: int, now: int) -> Command:
    site = f"mem-{run_id}" if mode == "one-site" else f"mem-{run_id}-{i}"
    return Command(f"flood-{run_id}-{i}", site, now, ADMIN, "DeleteRule", {"rule_id": f"r{i}"})


def run(mode: str, n: int, live: int, step: int, chunk: int, window: int | None) -> dict[str, Any]:
    c = Cluster(Path(tempfile.mkdtemp(prefix=f"cmdmem-{mode}-")), app_id=f"cmdmem-{mode}")
    env = {"COMMAND_DEDUP_WINDOW": str(window)} if window else {}
    try:
        w = WorkerProcess(c.settings, "w0", c.work_dir, env).start()
        c.workers.append(w)
        wait_ready(c, w)
        warm_up(c)
        time.sleep(3)
        base_offset = int(readyz(w)["catalog_offset"])
        samples = [{"commands": 0, "phase": "start", "rss_mib": rss_mib(w), "t_s": 0.0}]
        print(f"[{mode}] {samples[-1]}", flush=True)
        run_id = uuid.uuid4().hex[:6]
        now = int(time.time() * 1000)
        t0 = time.monotonic()
        next_mark = step

        def sample_until(target: int, phase: str, done_now: Any) -> None:
            nonlocal next_mark
            while True:
                done = done_now()
                while done >= next_mark and next_mark <= target:
                    samples.append({"commands": next_mark, "phase": phase, "rss_mib": rss_mib(w),
                                    "t_s": round(time.monotonic() - t0, 1)})
                    print(f"[{mode}] {samples[-1]}", flush=True)
                    next_mark += step
                if done >= target:
                    return
                if not w.alive:
                    raise RuntimeError(f"worker died:\n{w.log_tail()}")
                time.sleep(0.5)

        # 1. live decisions
        live = min(live, n)
        for i in range(live):
            c.producer.command(flood_command(run_id, mode, i, now))
        c.producer.flush()
        sample_until(live, "live", lambda: int(readyz(w).get("counters", {}).get("commands.REJECTED", 0)))
        live_s = time.monotonic() - t0
        live_rss = rss_mib(w)
        samples.append({"commands": live, "phase": "live (end)", "rss_mib": live_rss, "t_s": round(live_s, 1)})
        print(f"[{mode}] {samples[-1]}", flush=True)
        # 2. the rest as the catalog entries a worker writes for them
        topic = c.settings.topics.catalog
        parts = c.settings.command_partitions
        t1 = time.monotonic()
        for start in range(live, n, chunk):
            for i in range(start, min(n, start + chunk)):
                cmd = flood_command(run_id, mode, i, now)
                p = (murmur2(cmd.site_id.encode()) & 0x7FFFFFFF) % parts if mode == "one-site" else i % parts
                entry = CatalogEntry(cmd, "REJECTED", "NOT_FOUND", f"rule 'r{i}' does not exist",
                                     now, p, 1_000_000 + (i if mode == "one-site" else i // parts), None)
                c.producer.raw(topic, cmd.site_id.encode(), entry.encode())
            c.producer.flush()
            target = min(n, start + chunk)
            sample_until(target, "log", lambda: int(readyz(w).get("catalog_offset", -1)) - base_offset)
        log_s = time.monotonic() - t1
        peak = peak_mib(w)
        final = rss_mib(w)
        # 3. restart: re-read the whole log
        w.stop()
        c.workers.remove(w)
        w2 = WorkerProcess(c.settings, "w0", c.work_dir, env).start()  # same state dir
        c.workers.append(w2)
        load_s = wait_ready(c, w2)
        time.sleep(5)
        restart = {"rss_mib": rss_mib(w2), "ready_after_s": round(load_s, 1), "peak_rss_mib": peak_mib(w2),
                   "catalog_offset": readyz(w2).get("catalog_offset")}
        print(f"[{mode}] restart {restart}", flush=True)
        return {"mode": mode, "commands": n, "live_commands": live, "window": window or "default",
                "samples": samples, "final_rss_mib": final, "peak_rss_mib": peak,
                "live_decisions_per_s": round(live / live_s, 1), "live_rss_mib": live_rss,
                "log_entries_per_s": round((n - live) / log_s, 1) if n > live else None, "restart": restart}
    finally:
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=200_000)
    ap.add_argument("--live", type=int, default=4_000, help="how many of them the worker decides itself")
    ap.add_argument("--step", type=int, default=25_000, help="sample every N commands")
    ap.add_argument("--chunk", type=int, default=5_000)
    ap.add_argument("--window", type=int, default=0, help="COMMAND_DEDUP_WINDOW for the worker (0: its default)")
    ap.add_argument("--mode", choices=["one-site", "many-sites", "both"], default="both")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "command_memory_bench.json"))
    args = ap.parse_args()
    modes = ["one-site", "many-sites"] if args.mode == "both" else [args.mode]
    results = [run(m, args.commands, args.live, args.step, args.chunk, args.window or None) for m in modes]
    Path(args.out).write_text(json.dumps({"runs": results}, indent=2) + "\n")
    print(json.dumps({"runs": results}, indent=2))


if __name__ == "__main__":
    main()
