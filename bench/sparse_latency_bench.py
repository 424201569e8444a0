"""Latency of sparse user events: one event every ``--gap`` seconds into an otherwise idle worker
(most Moodle sites: a few profile edits a minute). Not a test.

    .venv/bin/python bench/sparse_latency_bench.py [--events 20] [--gap 1] [--fetch-wait-ms 50]

A fresh embedded broker and one worker with the streaming bench's catalog (1,000 rules of the
selective mix); each event is a new user whose profile matches some segments. Reports, per
event, produce -> the change's ``emitted_at`` (consume + evaluate) and produce -> the first
change read by a consumer (fetch wait 10 ms), and their p50 / max. The default worker fetch wait
is the worker's own default on tansu (50 ms). Writes bench/results/sparse_latency_bench.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rules_bench  # noqa: E402
import streaming_bench  # noqa: E402

from processor.broker import EmbeddedBroker  # noqa: E402
from processor.config import Settings, Topics  # noqa: E402
from processor.contract.codec import decode_membership_change, encode_user_event  # noqa: E402
from processor.contract.models import UserEvent  # noqa: E402
from processor.topics import ensure_topics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--gap", type=float, default=1.0, help="seconds between events")
    ap.add_argument("--fetch-wait-ms", type=int, default=50, help="the worker's FETCH_MAX_WAIT_MS")
    ap.add_argument("--rules", type=int, default=1000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sparse-bench-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    worker = None
    try:
        settings = Settings(bootstrap_servers=broker.bootstrap, app_id="bench-proc", topics=Topics(),
                            session_timeout_s=6)
        ensure_topics(settings)
        wargs = argparse.Namespace(fetch_wait_ms=args.fetch_wait_ms, env=[], rules=args.rules, mix="selective")
        worker, _url = streaming_bench.start_processor(broker.bootstrap, work, "proc", wargs, settings)
        lc = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"s-{uuid.uuid4().hex}",
                       "fetch.wait.max.ms": 10})
        lc.assign([TopicPartition(settings.topics.membership_changes, p, -1) for p in range(settings.partitions)])
        lc.consume(100, 1.0)
        lp = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        rng = random.Random(5)
        time.sleep(3)  # idle before the first event
        rows = []
        for i in range(args.events):
            e = UserEvent(f"sparse-{i}", "USER_CREATED", streaming_bench.SITE, f"sparse{i:05d}",
                          int(time.time() * 1000), rules_bench.make_profile(rng))
            lp.produce(settings.topics.user_events, key=f"{e.site_id}:{e.user_id}".encode(),
                       value=encode_user_event(e))
            lp.flush(10)
            got = None
            end = time.time() + args.gap
            while time.time() < end:
                for m in lc.consume(100, 0.01):
                    if m.error() or got is not None:
                        continue
                    ch = decode_membership_change(m.value())
                    if ch.cause_id == e.event_id:
                        got = {"to_evaluation_ms": ch.emitted_at - ch.occurred_at,
                               "read_ms": int(time.time() * 1000) - ch.occurred_at}
            rows.append(got)
            print(i, got, flush=True)
        seen = [r for r in rows if r is not None]
        res = {"events": args.events, "gap_s": args.gap, "fetch_wait_ms": args.fetch_wait_ms,
               "with_a_change": len(seen),
               "read_p50_ms": statistics.median(r["read_ms"] for r in seen) if seen else None,
               "read_max_ms": max(r["read_ms"] for r in seen) if seen else None,
               "to_evaluation_p50_ms": statistics.median(r["to_evaluation_ms"] for r in seen) if seen else None,
               "to_evaluation_max_ms": max(r["to_evaluation_ms"] for r in seen) if seen else None,
               "per_event": rows}
        print(json.dumps({k: v for k, v in res.items() if k != "per_event"}, indent=2))
        (ROOT / "bench" / "results" / "sparse_latency_bench.json").write_text(json.dumps(res, indent=2) + "\n")
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        broker.stop()


if __name__ == "__main__":
    main()
