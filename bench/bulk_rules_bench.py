"""Bulk commands: 1,000 rules applied and backfilled over 100k stored users. Not a test.

    .venv/bin/python bench/bulk_rules_bench.py [--users 100000] [--rules 1000] [--partitions 8]

One embedded broker, one worker; the users are written straight into the worker's RocksDB
partitions (as bench/backfill_bench.py does). Then, in the same run, each timed from producing
the command(s) until the command-results topic says ``APPLIED`` for every one of them (so every
backfill is done and its changes are on the output topic):

  (catalog) ``--rules`` segments created and managed: 2 x ``--rules`` operations as Batch
            commands of up to 1,000 operations (with the users already stored: the enables
            reconcile them);
  (a) baseline: one CreateRule, one command, over the same users;
  (b) the old path: ``--singles`` more CreateRules (on segments of their own) as separate
      commands (one backfill per partition each), extrapolated to ``--rules``;
  (c) the bulk path: ``--rules`` CreateRules as one Batch command (one backfill per partition).

Each of the ``--rules`` rules matches one department x city pair, so every user joins exactly one
segment: (c) makes one ADDED per stored user (``--match 0.1``: one user in ten joins one). Reports
absolute seconds, (c)/(a), the extrapolated (b)/(c), the backfill orders each phase put on the
control topic, the worker's CPU seconds per phase and the per-partition backfill times it logged.
Writes bench/results/bulk_rules_bench.json (``--out`` to write elsewhere).
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

from processor.broker import EmbeddedBroker, free_port
from processor.config import Settings, Topics
from processor.contract.codec import decode_command_result, encode_command
from processor.contract.models import Actor, Command
from processor.state.user_state import UserState
from processor.topics import ensure_topics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_support import start_worker, stop, table_partitions, wait_ready, write_users  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SITE = "bench-bulk"
ADMIN = Actor("bench", ("site_admin",))
DEPTS = 50  # x CITIES = the number of distinct rules, one per (department, city)
MAX_OPS = 1000


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed_users(dbs: dict[int, Path], n: int, cities: int, partitions: int) -> None:
    """``cities``: the city values users get; the rules cover the first ``--rules // 50`` of them."""
    rng = random.Random(7)

    def states() -> Iterator[UserState]:
        for i in range(n):
            uid = f"u{i:07d}"
            yield UserState(SITE, uid, profile={
                "username": uid, "department": f"d{rng.randrange(DEPTS)}", "city": f"c{rng.randrange(cities)}",
                "email": f"{uid}@example.org", "timecreated": 1_700_000_000 + i}, last_offset=-1)

    write_users(dbs, partitions, states())


def rule_payload(i: int, segment: str, cities: int) -> dict:
    cond = {"all": [{"field": "department", "op": "equals", "value": f"d{i % DEPTS}"},
                    {"field": "city", "op": "equals", "value": f"c{(i // DEPTS) % cities}"}]}
    return {"rule_id": f"r{i:05d}", "segment_id": segment, "name": f"rule {i}", "condition_json": json.dumps(cond),
            "enabled": True}


class Bench:
    def __init__(self, bootstrap: str, settings: Settings, broker_pid: int | None = None) -> None:
        self.broker_pid = broker_pid
        self.t = settings.topics
        self.partitions = settings.partitions
        self.producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 1_000_000})
        self.results = Consumer({"bootstrap.servers": bootstrap, "group.id": f"b-{uuid.uuid4().hex}",
                                 "enable.auto.commit": False})
        self.results.assign([TopicPartition(self.t.command_results, p, 0) for p in range(4)])
        self.control = Consumer({"bootstrap.servers": bootstrap, "group.id": f"b-{uuid.uuid4().hex}",
                                 "enable.auto.commit": False})
        self.control.assign([TopicPartition(self.t.control, p, 0) for p in range(self.partitions)])
        self.applied: dict[str, dict] = {}
        self.orders: dict[str, int] = {}

    def command(self, cid: str, ptype: str, payload: dict) -> Command:
        return Command(cid, SITE, int(time.time() * 1000), ADMIN, ptype, payload)

    def send(self, cmds: list[Command]) -> None:
        for c in cmds:
            self.producer.produce(self.t.commands, key=SITE.encode(), value=encode_command(c))
        self.producer.flush(60)

    def wait_applied(self, ids: list[str], worker: subprocess.Popen, timeout: float = 3600) -> None:
        want = set(ids)
        deadline = time.time() + timeout
        while not want <= set(self.applied):
            assert time.time() < deadline, f"not APPLIED: {sorted(want - set(self.applied))[:5]}"
            assert worker.poll() is None, "worker died"
            for m in self.results.consume(1000, 0.2):
                if m.error() or m.value() is None:
                    continue
                r = decode_command_result(m.value())
                if r.status == "REJECTED":
                    raise AssertionError(f"{r.command_id} rejected: {r.code} {r.message}")
                if r.status == "APPLIED" and r.command_id not in self.applied:
                    self.applied[r.command_id] = {"added": r.users_added, "removed": r.users_removed,
                                                  "evaluated": r.users_evaluated}

    def count_orders(self) -> None:
        """Backfill orders on the control topic so far, per command id (ticks skipped)."""
        while True:
            msgs = self.control.consume(10000, 1.0)
            if not msgs:
                return
            for m in msgs:
                if m.error() or not m.value():
                    continue
                body = json.loads(m.value())
                if "command_id" in body:
                    self.orders[body["command_id"]] = self.orders.get(body["command_id"], 0) + 1

    def phase(self, name: str, cmds: list[Command], worker: subprocess.Popen, log: Path) -> dict:
        mark = log.stat().st_size
        cpu0 = cpu_s(worker.pid)
        broker0 = cpu_s(self.broker_pid) if self.broker_pid else 0.0
        t0 = time.perf_counter()
        self.send(cmds)
        self.wait_applied([c.command_id for c in cmds], worker)
        took = time.perf_counter() - t0
        cpu = cpu_s(worker.pid) - cpu0
        broker_cpu = (cpu_s(self.broker_pid) - broker0) if self.broker_pid else None
        self.count_orders()
        ids = {c.command_id for c in cmds}
        lines = log.read_bytes()[mark:].decode(errors="replace").splitlines()
        backfills = [float(m.group(2)) for line in lines
                     if (m := re.search(r"backfill (\S+) site=\S+ partition=\d+ users=\d+ changes=\d+ in ([\d.]+)s",
                                        line)) and m.group(1) in ids]
        out = {"commands": len(cmds), "seconds": round(took, 2), "worker_cpu_s": round(cpu, 2),
               "broker_cpu_s": round(broker_cpu, 2) if broker_cpu is not None else None,
               "backfill_orders": sum(self.orders.get(i, 0) for i in ids),
               "users_added": sum(self.applied[i]["added"] or 0 for i in ids),
               "partition_backfill_s_sum": round(sum(backfills), 2),
               "partition_backfill_s_max": round(max(backfills), 2) if backfills else None}
        print(f"{name}: {json.dumps(out)}", flush=True)
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--singles", type=int, default=20, help="rules sent one command each (the old path), timed")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--match", type=float, default=1.0,
                    help="share of the users some rule matches (1.0: every user joins one segment)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bulk_rules_bench.json"))
    ap.add_argument("--py-spy", default="", metavar="FILE",
                    help="record the worker (the GIL holder: its Python CPU) with py-spy during the bulk phase into FILE (collapsed stacks; "
                         "summarise with bench/spy_top.py FILE)")
    args = ap.parse_args()
    cities = max(1, args.rules // DEPTS)
    work = Path(tempfile.mkdtemp(prefix="bulk-bench-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    bs = broker.bootstrap
    res: dict[str, object] = {"users": args.users, "rules": args.rules, "partitions": args.partitions,
                              "match": args.match}
    w: subprocess.Popen | None = None
    try:
        settings = Settings(bootstrap_servers=bs, app_id="bench-bulk", topics=Topics(), session_timeout_s=6,
                            partitions=args.partitions)
        ensure_topics(settings)
        port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bs, WEB_PORT=str(port), STATE_DIR=str(work / "state"),
                   APP_ID="bench-bulk", BROKER_SESSION_TIMEOUT="6", LOG_FORMAT="text", BROKER_QUIRKS=EmbeddedBroker.QUIRKS,
                   PARTITIONS=str(args.partitions), FETCH_MAX_WAIT_MS="50")
        url = f"http://127.0.0.1:{port}"
        log = work / "worker.log"
        b = Bench(bs, settings, broker.proc.pid if broker.proc is not None else None)

        # first start: creates the table's RocksDB partitions; stop, then seed them directly
        w = start_worker(env, log)
        wait_ready(url, w)
        b.send([b.command("b-base-seg", "UpsertSegment", {"segment_id": "base", "name": "base"}),
                b.command("b-base-on", "EnableSegmentAutomation", {"segment_id": "base"})])
        b.wait_applied(["b-base-seg", "b-base-on"], w)
        time.sleep(3)  # let the offsets of those commands' (empty) backfills be committed
        stop(w)
        dbs = table_partitions(work / "state")
        assert len(dbs) == args.partitions, f"expected {args.partitions} table partitions, found {sorted(dbs)}"
        t = time.perf_counter()
        seed_users(dbs, args.users, max(cities, round(cities / args.match)), args.partitions)
        res["seed_s"] = round(time.perf_counter() - t, 1)
        w = start_worker(env, log)
        wait_ready(url, w)
        print(f"seeded {args.users} users in {res['seed_s']} s", flush=True)

        n = args.singles
        segs = [f"seg{i:05d}" for i in range(args.rules + n)]  # the last n for the single commands
        ops = [{"type": "UpsertSegment", "payload": {"segment_id": s, "name": s}} for s in segs]
        ops += [{"type": "EnableSegmentAutomation", "payload": {"segment_id": s}} for s in segs]
        res["catalog"] = b.phase("catalog", [b.command(f"b-cat-{i}", "Batch", {"operations": ops[i:i + MAX_OPS]})
                                             for i in range(0, len(ops), MAX_OPS)], w, log)

        base = {"rule_id": "r-base", "segment_id": "base", "name": "base",
                "condition_json": json.dumps({"field": "department", "op": "equals", "value": "d0"}), "enabled": True}
        res["a_one_rule"] = b.phase("a: one rule", [b.command("b-one", "CreateRule", base)], w, log)

        singles = [b.command(f"b-single-{i}", "CreateRule", rule_payload(i, segs[i], cities))
                   for i in range(args.rules, args.rules + n)]
        res["b_single_commands"] = b.phase(f"b: {n} rules one command each", singles, w, log)

        bulk_ops = [{"type": "CreateRule", "payload": rule_payload(i, segs[i], cities)} for i in range(args.rules)]
        bulk = [b.command(f"b-bulk-{i}", "Batch", {"operations": bulk_ops[i:i + MAX_OPS]})
                for i in range(0, len(bulk_ops), MAX_OPS)]
        spy = None
        if args.py_spy:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw", "--gil",
                                    "-r", "100", "-o", args.py_spy, "-p", str(w.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        res["c_bulk"] = b.phase(f"c: {len(bulk_ops)} rules as {len(bulk)} batch command(s)", bulk, w, log)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)

        a, bb, c = res["a_one_rule"], res["b_single_commands"], res["c_bulk"]  # type: ignore[assignment]
        per_single = bb["seconds"] / max(1, bb["commands"])  # type: ignore[index]
        bulk_rules = len(bulk_ops)
        res["summary"] = {
            "bulk_rules": bulk_rules,
            "bulk_seconds": c["seconds"],  # type: ignore[index]
            "bulk_over_one_rule": round(c["seconds"] / a["seconds"], 2),  # type: ignore[index]
            "single_command_s_each": round(per_single, 2),
            "old_path_estimate_s": round(per_single * bulk_rules, 1),
            "old_path_estimate_over_bulk": round(per_single * bulk_rules / c["seconds"], 1),  # type: ignore[index]
            "backfill_orders_per_partition_bulk": c["backfill_orders"] / args.partitions,  # type: ignore[index]
            "target_s": 30, "met": c["seconds"] <= 30,  # type: ignore[index]
        }
        print(json.dumps(res, indent=2), flush=True)
        res["load_avg_1m"] = os.getloadavg()[0]
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
        b.results.close()
        b.control.close()
    finally:
        if w is not None and w.poll() is None:
            w.kill()
        broker.stop()


if __name__ == "__main__":
    main()
