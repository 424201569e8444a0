"""Single commands, one after the other: how long until each is decided and until its backfill's
changes are all out. Not a test.

    .venv/bin/python bench/single_command_bench.py [--users 20000] [--commands 10] [--partitions 8]

Runs on any version of the worker (it reads only the decision and the membership changes), so
two versions can be compared side by side on the same machine (docs/performance.md, "Bulk
commands": single commands must not get slower). One embedded broker, one worker, the users
written straight into its RocksDB partitions (as bench/backfill_bench.py). Each command is a
CreateRule on its own managed segment matching a known set of users; the next is sent when the
previous one's last ADDED has been read. Reports the median and max of: produce -> decision
(ACCEPTED on the results topic), produce -> last change read. Writes
bench/results/single_command_bench.json (``--out`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

from confluent_kafka import Consumer, Producer, TopicPartition

from processor.broker import EmbeddedBroker, free_port
from processor.config import Settings, Topics
from processor.contract.codec import decode_command_result, decode_membership_change, encode_command
from processor.contract.models import Actor, Command
from processor.topics import ensure_topics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_support import start_worker, stop, table_partitions, wait_ready, write_users  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SITE = "bench-single"
ADMIN = Actor("bench", ("site_admin",))
DEPTS = 20


def seed(dbs: dict[int, Path], n: int, partitions: int) -> dict[str, int]:
    from processor.state.user_state import UserState

    rng = random.Random(5)
    per: dict[str, int] = {}

    def states() -> Iterator[UserState]:
        for i in range(n):
            uid = f"u{i:07d}"
            dept = f"d{rng.randrange(DEPTS)}"
            per[dept] = per.get(dept, 0) + 1
            yield UserState(SITE, uid, profile={"username": uid, "department": dept}, last_offset=-1)

    write_users(dbs, partitions, states())
    return per


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--commands", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "single_command_bench.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="single-bench-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    bs = broker.bootstrap
    w = None
    try:
        s = Settings(bootstrap_servers=bs, app_id="bench-single", topics=Topics(), session_timeout_s=6,
                     partitions=args.partitions)
        ensure_topics(s)
        port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bs, WEB_PORT=str(port), STATE_DIR=str(work / "state"),
                   APP_ID="bench-single", BROKER_SESSION_TIMEOUT="6", LOG_FORMAT="text",
                   BROKER_QUIRKS=EmbeddedBroker.QUIRKS, PARTITIONS=str(args.partitions), FETCH_MAX_WAIT_MS="50")
        url, log = f"http://127.0.0.1:{port}", work / "worker.log"
        prod = Producer({"bootstrap.servers": bs})
        now = int(time.time() * 1000)
        segs = [f"seg{i}" for i in range(args.commands)]
        for i, seg in enumerate(segs):
            for c in (Command(f"s-{i}", SITE, now, ADMIN, "UpsertSegment", {"segment_id": seg, "name": seg}),
                      Command(f"e-{i}", SITE, now, ADMIN, "EnableSegmentAutomation", {"segment_id": seg})):
                prod.produce(s.topics.commands, key=SITE.encode(), value=encode_command(c))
        prod.flush(30)
        w = start_worker(env, log)
        wait_ready(url, w)
        time.sleep(8)  # the setup commands decided and their (empty) backfills committed
        stop(w)
        dbs = table_partitions(work / "state")
        per = seed(dbs, args.users, args.partitions)
        w = start_worker(env, log)
        wait_ready(url, w)
        changes = Consumer({"bootstrap.servers": bs, "group.id": f"b-{uuid.uuid4().hex}", "enable.auto.commit": False})
        changes.assign([TopicPartition(s.topics.membership_changes, p, 0) for p in range(args.partitions)])
        results = Consumer({"bootstrap.servers": bs, "group.id": f"b-{uuid.uuid4().hex}", "enable.auto.commit": False})
        results.assign([TopicPartition(s.topics.command_results, p, 0) for p in range(4)])
        decided, done = [], []
        for i, seg in enumerate(segs):
            dept = f"d{i % DEPTS}"
            cid = f"rule-{i}-{uuid.uuid4().hex[:6]}"
            rule = Command(cid, SITE, int(time.time() * 1000), ADMIN, "CreateRule", {
                "rule_id": f"r{i}", "segment_id": seg, "name": seg,
                "condition_json": json.dumps({"field": "department", "op": "equals", "value": dept}), "enabled": True})
            t0 = time.perf_counter()
            prod.produce(s.topics.commands, key=SITE.encode(), value=encode_command(rule))
            prod.flush(30)
            t_dec = None
            added = 0
            deadline = time.time() + 300
            while (t_dec is None or added < per[dept]) and time.time() < deadline:
                for m in results.consume(100, 0.01):
                    if not m.error() and m.value() and t_dec is None:
                        r = decode_command_result(m.value())
                        if r.command_id == cid and r.status in ("ACCEPTED", "REJECTED"):
                            t_dec = time.perf_counter() - t0
                for m in changes.consume(10000, 0.01):
                    if m.error() or not m.value():
                        continue
                    ch = decode_membership_change(m.value())
                    if ch.cause_id == cid and ch.change == "ADDED":
                        added += 1
                assert w.poll() is None, "worker died"
            assert added == per[dept], (added, per[dept])
            decided.append(t_dec)
            done.append(time.perf_counter() - t0)
            print(f"{cid}: decided {t_dec:.3f} s, {added} added, all out {done[-1]:.3f} s", flush=True)
        res = {"users": args.users, "commands": args.commands, "partitions": args.partitions,
               "decided_s": {"median": round(statistics.median(decided), 3), "max": round(max(decided), 3)},
               "all_changes_out_s": {"median": round(statistics.median(done), 3), "max": round(max(done), 3)},
               "load_avg_1m": os.getloadavg()[0]}
        print(json.dumps(res, indent=2))
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
        changes.close()
        results.close()
    finally:
        if w is not None and w.poll() is None:
            w.kill()
        broker.stop()


if __name__ == "__main__":
    main()
