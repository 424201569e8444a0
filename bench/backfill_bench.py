"""Backfill: one CreateRule re-evaluates every stored user. Not a test.

    .venv/bin/python bench/backfill_bench.py [--users 1000000] [--partitions 8]

Same run, same RocksDB state:
  (a) bare scan: iterate every stored user's key and value bytes in the worker's RocksDB
      partitions, in this process, with the worker stopped. Values are not decoded: the
      baseline is the store alone, so a faster state codec raises the ratio instead of
      lowering it;
  (b) the backfill: a running worker gets CreateRule (matching 20% of the users: department in
      2 of 10 equally likely values); timed from producing the command until the last ADDED of
      that command is read by a consumer.
Reports users/s of (a) and (b), the ratio (b)/(a), the end-to-end time, the worker's peak RSS
(VmHWM), and the per-partition backfill times the worker logged. Writes
bench/results/backfill_bench.json.

Seeding: the users are written straight into the worker's RocksDB partitions (the table's
local store, found after one start of the worker) rather than streamed through the processor,
which would take ~10 minutes per million users at the streaming rate. The changelog therefore
does not hold them: fine for this measurement, which only reads the local store.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

from confluent_kafka import Consumer, Producer, TopicPartition
from rocksdict import Options, Rdict

from processor.broker import EmbeddedBroker, free_port
from processor.config import Settings, Topics
from processor.contract.codec import decode_membership_change, encode_command
from processor.contract.models import Actor, Command
from processor.state.keys import USER
from processor.state.user_state import UserState
from processor.topics import ensure_topics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_support import ready, start_worker, stop, table_partitions, wait_ready, write_users  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SITE = "bench-backfill"
DEPARTMENTS = ["sales", "engineering", "marketing", "finance", "support", "legal", "hr", "it", "ops", "research"]
MATCH = ["sales", "engineering"]  # 2 of 10 equally likely values: 20% of the users
ADMIN = Actor("bench", ("site_admin",))


def status(pid: int) -> dict[str, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    kb = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines() if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss_mb": round(kb["VmRSS"] / 1024, 1), "peak_rss_mb": round(kb["VmHWM"] / 1024, 1)}


def counter(url: str, prefix: str) -> int:
    try:
        c = ready(url)["counters"]
    except (OSError, KeyError):
        return 0
    return sum(v for k, v in c.items() if k.startswith(prefix))


def seed_users(dbs: dict[int, Path], n: int, seed: int, partitions: int) -> int:
    """Write n users into their partitions' RocksDB stores; return how many match the rule."""
    rng = random.Random(seed)
    matching = 0

    def states() -> Iterator[UserState]:
        nonlocal matching
        for i in range(n):
            uid = f"u{i:07d}"
            dept = rng.choice(DEPARTMENTS)
            matching += dept in MATCH
            yield UserState(SITE, uid, profile={
                "username": uid, "department": dept, "city": rng.choice(["Paris", "Oslo", "Lima", "Pune"]),
                "country": rng.choice(["FR", "NO", "PE", "IN"]), "email": f"{uid}@example.org",
                "timecreated": 1_700_000_000 + i}, last_offset=-1)

    write_users(dbs, partitions, states())
    return matching


def bare_scan(dbs: dict[int, Path]) -> tuple[int, float]:
    """Iterate every stored user's key and value bytes, decoding nothing (the floor a backfill
    cannot beat); (users, seconds)."""
    t = time.perf_counter()
    n = 0
    for path in dbs.values():
        db = Rdict(str(path), Options(raw_mode=True))
        try:
            for k, v in db.items(from_key=USER):
                if not k.startswith(USER):
                    break
                n += len(v) > 0
        finally:
            db.close()
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--py-spy", default="", metavar="FILE",
                    help="record the worker with py-spy during the backfill into FILE (collapsed stacks; "
                         "summarise with bench/spy_top.py FILE)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="backfill-bench-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    bs = broker.bootstrap
    res: dict[str, object] = {"users": args.users, "partitions": args.partitions}
    w: subprocess.Popen | None = None
    try:
        settings = Settings(bootstrap_servers=bs, app_id="bench-backfill", topics=Topics(), session_timeout_s=6,
                            partitions=args.partitions)
        ensure_topics(settings)
        port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bs, WEB_PORT=str(port), STATE_DIR=str(work / "state"),
                   APP_ID="bench-backfill", BROKER_SESSION_TIMEOUT="6", LOG_FORMAT="text",
                   PARTITIONS=str(args.partitions),
                   FETCH_MAX_WAIT_MS="50")  # tansu answers a fetch only when its wait ends (as the other benches)
        url = f"http://127.0.0.1:{port}"
        log = work / "worker.log"

        # the catalog: a managed segment, no rule yet
        cp = Producer({"bootstrap.servers": bs})
        now = int(time.time() * 1000)
        for cmd in (Command("b-seg", SITE, now, ADMIN, "UpsertSegment", {"segment_id": "pop20", "name": "pop20"}),
                    Command("b-enable", SITE, now, ADMIN, "EnableSegmentAutomation", {"segment_id": "pop20"})):
            cp.produce(settings.topics.commands, key=SITE.encode(), value=encode_command(cmd))
        cp.flush(30)

        # first start: creates the table's RocksDB partitions; stop, then seed them directly
        w = start_worker(env, log, env.get("BENCH_LOG_LEVEL", "warn"))
        wait_ready(url, w)
        deadline = time.time() + 120
        while counter(url, "commands.") < 2 and time.time() < deadline:
            time.sleep(0.3)
        time.sleep(5)  # let the (empty) backfill orders of those commands be processed and committed
        stop(w)
        dbs = table_partitions(work / "state")
        assert len(dbs) == args.partitions, f"expected {args.partitions} table partitions, found {sorted(dbs)}"
        t = time.perf_counter()
        matching = seed_users(dbs, args.users, 11, args.partitions)
        res["seed_s"] = round(time.perf_counter() - t, 1)
        res["expected_added"] = matching

        scanned, scan_s = bare_scan(dbs)
        assert scanned == args.users, (scanned, args.users)
        res["bare_scan"] = {"seconds": round(scan_s, 2), "users_per_s": round(scanned / scan_s),
                            "decodes_values": False}
        print(f"seeded {args.users} users ({matching} will match); bare scan (no decoding) "
              f"{scanned / scan_s:,.0f} users/s", flush=True)

        # second start on the seeded state, then the rule
        w = start_worker(env, log, env.get("BENCH_LOG_LEVEL", "warn"))
        wait_ready(url, w)
        c = Consumer({"bootstrap.servers": bs, "group.id": f"b-{uuid.uuid4().hex}", "enable.auto.commit": False})
        c.assign([TopicPartition(settings.topics.membership_changes, p, 0) for p in range(args.partitions)])
        rule = Command("b-rule", SITE, int(time.time() * 1000), ADMIN, "CreateRule", {
            "rule_id": "r-pop20", "segment_id": "pop20", "name": "20 percent",
            "condition_json": json.dumps({"field": "department", "op": "in", "value": MATCH}), "enabled": True})
        log_mark = log.stat().st_size
        spy = None
        if args.py_spy:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                                    "-r", "200", "-o", args.py_spy, "-p", str(w.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.perf_counter()
        cp.produce(settings.topics.commands, key=SITE.encode(), value=encode_command(rule))
        cp.flush(30)
        added, first_at, last_at = 0, None, None
        deadline = time.time() + 3600
        while added < matching and time.time() < deadline:
            for m in c.consume(10000, 0.5):
                if m.error():
                    continue
                ch = decode_membership_change(m.value())
                if ch.segment_id == "pop20" and ch.change == "ADDED":  # any cause: membership complete
                    added += 1
                    last_at = time.perf_counter()
                    first_at = first_at or last_at
            assert w.poll() is None, "worker died"
        total = (last_at or time.perf_counter()) - t0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        st = status(w.pid)
        lines = log.read_bytes()[log_mark:].decode(errors="replace").splitlines()
        per_part = [float(m.group(1)) for line in lines
                    if (m := re.search(r"backfill b-rule site=\S+ partition=\d+ users=\d+ changes=\d+ in ([\d.]+)s", line))]
        rate = args.users / total
        res["backfill"] = {
            "added_seen": added,
            "end_to_end_s": round(total, 2),
            "first_added_after_s": round((first_at or t0) - t0, 2),
            "users_evaluated_per_s": round(rate),
            "partition_backfill_s": per_part,
            "worker_rss_mb": st["rss_mb"],
            "worker_peak_rss_mb": st["peak_rss_mb"],
        }
        res["ratio_backfill_over_bare_scan"] = round(rate / (scanned / scan_s), 3)
        res["target"] = {"end_to_end_s_at_1M": 60, "min_ratio": 0.25, "max_peak_rss_mb": 500,
                         "note": "min_ratio was set against a bare scan that decoded every state"}
        print(json.dumps(res, indent=2))
        print(f"backfill {rate:,.0f} users/s end to end ({total:.1f} s); bare scan {scanned / scan_s:,.0f} users/s; "
              f"ratio {res['ratio_backfill_over_bare_scan']}", flush=True)
        out = ROOT / "bench" / "results" / "backfill_bench.json"
        out.write_text(json.dumps(res, indent=2) + "\n")
        c.close()
    finally:
        if w is not None and w.poll() is None:
            w.kill()
        broker.stop()


if __name__ == "__main__":
    main()
