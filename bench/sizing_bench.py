"""Sizing: a worker's memory and disk per 100,000 stored users (issue 19, docs/deploy.md). Not a test.

    .venv/bin/python bench/sizing_bench.py [--users 100000] [--steps 2] [--partitions 8]

One worker on the embedded broker, one site with three managed segments (a rule matching
everyone, one matching 10% of the users, a time-relative one matching ~half), then `--steps`
rounds of `--users` USER_CREATED events (Moodle-like profiles of 16 fields) produced through
processor.client.ContractProducer. After each round, once the worker has processed every event
and its outbox is idle: the worker's RSS (tests.support.harness.proc_memory_kb) and the size of its
STATE_DIR (du). At the end the worker is stopped (RocksDB flushes) and measured on disk again,
and the users' stored state is read back to size the compacted changelog topic.
Per-100k figures are the slopes between rounds, so the idle worker's baseline is left out.
Writes bench/results/sizing_bench.json.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from rocksdict import Options, Rdict  # noqa: E402

from tests.support.harness import Cluster, make_command, make_event, proc_memory_kb  # noqa: E402

SITE = "sizing"
DEPARTMENTS = ["Sales", "Engineering", "Marketing", "Finance", "Support", "Legal", "HR", "IT", "Ops", "Research"]
CITIES = ["Berlin", "Lisbon", "Oslo", "Madrid", "Vienna", "Prague", "Dublin", "Turin"]


def metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def profile(i: int, now_s: int, rnd: random.Random) -> dict[str, object]:
    first, last = f"First{i % 997}", f"Last{i % 1009}"
    return {
        "username": f"user{i:07d}", "email": f"user{i:07d}@example.edu", "firstname": first, "lastname": last,
        "idnumber": f"ID{i:08d}", "institution": "Example University", "department": DEPARTMENTS[i % 10],
        "city": rnd.choice(CITIES), "country": "DE", "lang": "en", "timezone": "Europe/Berlin", "auth": "manual",
        "suspended": False, "timecreated": now_s - rnd.randint(0, 60 * 86400), "lastaccess": now_s - rnd.randint(0, 86400),
        "profile_field_team": f"team-{i % 50}",
    }


def wait_processed(c: Cluster, url: str, target: float, timeout: float) -> dict[str, float]:
    """Until the worker has counted `target` user events and its outbox released everything."""
    deadline = time.monotonic() + timeout
    last_changes, stable = -1.0, 0
    while time.monotonic() < deadline:
        m = metrics(url)
        if m.get("segment_user_events_total", 0) >= target:
            changes = m.get("segment_membership_changes_total", 0)
            stable = stable + 1 if changes == last_changes else 0
            last_changes = changes
            if stable >= 3:
                return m
        if not c.workers[0].alive:
            raise SystemExit(f"worker died:\n{c.workers[0].log_tail()}")
        time.sleep(1.0)
    raise SystemExit(f"timed out waiting for {target} events: {metrics(url).get('segment_user_events_total')}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sizing-"))
    c = Cluster(work, partitions=args.partitions, app_id="sa-sizing")
    rows = []
    try:
        w = c.start_worker("w0")
        cmds = [make_command(SITE, "UpsertProfileField", shortname="team", name="Team", datatype="TEXT"),
                make_command(SITE, "UpsertSegment", segment_id="all", name="Everyone"),
                make_command(SITE, "UpsertSegment", segment_id="sales", name="Sales"),
                make_command(SITE, "UpsertSegment", segment_id="new", name="New this month")]
        cmds += [make_command(SITE, "EnableSegmentAutomation", segment_id=s) for s in ("all", "sales", "new")]
        cmds += [make_command(SITE, "CreateRule", rule_id="r-all", segment_id="all", name="All",
                              condition={"field": "auth", "op": "equals", "value": "manual"}),
                 make_command(SITE, "CreateRule", rule_id="r-sales", segment_id="sales", name="Sales",
                              condition={"field": "department", "op": "equals", "value": "Sales"}),
                 make_command(SITE, "CreateRule", rule_id="r-new", segment_id="new", name="New",
                              condition={"field": "timecreated", "op": "within_last", "value": "P30D"})]
        for cmd in cmds:
            c.producer.command(cmd)
            c.producer.flush()
            res = c.wait_results([cmd.command_id], 120)[cmd.command_id]
            assert res.status == "ACCEPTED", res
        base_events = metrics(w.url).get("segment_user_events_total", 0)
        time.sleep(5)
        rss0 = proc_memory_kb(w.proc.pid)  # type: ignore[union-attr]
        rows.append({"users": 0, "rss_kb": rss0["VmRSS"], "hwm_kb": rss0["VmHWM"], "state_dir_bytes": du_bytes(w.state_dir)})
        print(rows[-1], flush=True)
        rnd = random.Random(7)
        now_s = int(time.time())
        n = 0
        for step in range(args.steps):
            t0 = time.monotonic()
            for _ in range(args.users):
                c.producer.user_event(make_event(SITE, f"u{n:07d}", **profile(n, now_s, rnd)))
                n += 1
            c.producer.flush()
            m = wait_processed(c, w.url, base_events + n, timeout=3600)
            took = time.monotonic() - t0
            time.sleep(5)
            mem = proc_memory_kb(w.proc.pid)  # type: ignore[union-attr]
            rows.append({"users": n, "rss_kb": mem["VmRSS"], "hwm_kb": mem["VmHWM"],
                         "state_dir_bytes": du_bytes(w.state_dir), "seconds": round(took, 1),
                         "events_per_s": round(args.users / took), "changes": m.get("segment_membership_changes_total")})
            print(rows[-1], flush=True)
        w.stop()
        stopped_bytes = du_bytes(w.state_dir)
        # the table's records read back (one RocksDB per partition): the compacted changelog
        # holds the same keys and values, so this sizes the changelog topic too
        by_prefix: dict[str, list[int]] = {}
        for path in sorted(w.state_dir.rglob("users-*.db")):
            db = Rdict(str(path), Options(raw_mode=True))
            try:
                for k, v in db.items():
                    agg = by_prefix.setdefault(k[:1].decode("latin-1"), [0, 0])
                    agg[0] += 1
                    agg[1] += len(k) + len(v)
            finally:
                db.close()
    finally:
        c.close()
    per100k = 100_000 / args.users
    steps = [(rows[i]["rss_kb"] - rows[i - 1]["rss_kb"]) * per100k / 1024 for i in range(1, len(rows))]
    disk = [(rows[i]["state_dir_bytes"] - rows[i - 1]["state_dir_bytes"]) * per100k / 2**20 for i in range(1, len(rows))]
    result = {
        "users_per_step": args.users, "steps": args.steps, "partitions": args.partitions, "rows": rows,
        "rss_mb_per_100k_by_step": [round(x, 1) for x in steps],
        "state_dir_mb_per_100k_by_step_running": [round(x, 1) for x in disk],
        "state_dir_mb_after_stop": round(stopped_bytes / 2**20, 1),
        "state_dir_mb_per_100k_after_stop": round(stopped_bytes / 2**20 * 100_000 / max(1, n), 1),
        "table_records_by_key_prefix": {k: {"records": v[0], "key_value_bytes": v[1]} for k, v in by_prefix.items()},
        "table_mb_per_100k": round(sum(v[1] for v in by_prefix.values()) / 2**20 * 100_000 / max(1, n), 1),
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "sizing_bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
