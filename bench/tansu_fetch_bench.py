"""The embedded broker's CPU for one consumer at the end of a partition, against how many record
batches the partition already holds. Not a test; explains why latency climbs during
bench/streaming_bench.py's latency phases (docs/performance.md).

    .venv/bin/python bench/tansu_fetch_bench.py [--batch 5] [--records 0,10000,25000,50000,100000]

One topic with one partition; records of 300 bytes produced in batches of ``--batch`` records
until the partition holds each ``--records`` count. After each step, for 4 seconds each, the
broker's CPU (share of one core) is measured
  * idle: nobody connected;
  * ``at_end_idle``: one consumer at the end polling with ``fetch.wait.max.ms`` 10 (what the
    bench's latency consumer uses), nothing produced;
  * ``live``: the same consumer while a producer adds 200 one-record batches per second (a
    steady trickle, like the latency phase's input and the worker's output), all read.
Writes bench/results/tansu_fetch_bench.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from processor.broker import EmbeddedBroker  # noqa: E402


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def share(pid: int, seconds: float, work: object = None) -> float:
    """CPU of ``pid`` over ``seconds`` (calling ``work()`` in a loop meanwhile), % of one core."""
    c0, t0 = cpu_s(pid), time.time()
    while time.time() - t0 < seconds:
        if work is None:
            time.sleep(0.1)
        else:
            work()  # type: ignore[operator]
    return round(100 * (cpu_s(pid) - c0) / (time.time() - t0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=5, help="records per produced batch")
    ap.add_argument("--records", default="0,10000,25000,50000,100000")
    ap.add_argument("--fetch-wait-ms", type=int, default=10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tansu-fetch-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    pid = broker.proc.pid  # type: ignore[union-attr]
    rows = []
    try:
        bs = broker.bootstrap
        admin = AdminClient({"bootstrap.servers": bs})
        admin.create_topics([NewTopic("t", 1, 1)])["t"].result()
        p = Producer({"bootstrap.servers": bs, "linger.ms": 5, "batch.num.messages": args.batch,
                      "queue.buffering.max.messages": 1_000_000})
        total = 0
        batches = 0  # batches in the partition (fill batches plus the live step's one-record batches)
        for target in (int(x) for x in args.records.split(",")):
            batches += max(0, target - total) // args.batch
            while total < target:
                p.produce("t", key=b"k%d" % total, value=b"v" * 300)
                total += 1
                if total % 1000 == 0:
                    p.poll(0)
            p.flush(120)
            idle = share(pid, 3)
            c = Consumer({"bootstrap.servers": bs, "group.id": f"g{target}", "enable.auto.commit": False,
                          "fetch.wait.max.ms": args.fetch_wait_ms})
            c.assign([TopicPartition("t", 0, -1)])
            c.consume(100, 0.5)
            polling = share(pid, 4, lambda: c.consume(100, 0.05))
            trickle = Producer({"bootstrap.servers": bs, "linger.ms": 0})
            state = {"t0": time.time(), "sent": 0, "read": 0}

            def live() -> None:
                while state["sent"] < (time.time() - state["t0"]) * 200:
                    trickle.produce("t", value=b"x" * 300)
                    state["sent"] += 1
                trickle.poll(0)
                state["read"] += len(c.consume(100, 0.002))

            live_pct = share(pid, 4, live)
            trickle.flush(10)
            c.close()
            total += state["sent"]
            batches += state["sent"]
            row = {"records": total - state["sent"], "batches_before": batches - state["sent"], "broker_cpu_pct_idle": idle,
                   "broker_cpu_pct_at_end_idle": polling, "broker_cpu_pct_live_200_batches_per_s": live_pct,
                   "live_sent": state["sent"], "live_read": state["read"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        broker.stop()
    out = {"batch_records": args.batch, "fetch_wait_ms": args.fetch_wait_ms, "rows": rows}
    (ROOT / "bench" / "results" / "tansu_fetch_bench.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
