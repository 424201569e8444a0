"""What the CloudEvents headers cost per membership change (issue 19, optional part).

    .venv/bin/python bench/cloudevents_bench.py [--records 20000] [--repeats 5]

In process, no broker. N realistic changes (evidence of two fields, ids as the engine makes
them; five changes per cause, causes one second apart) go through, each timed as the best of
``--repeats`` passes:

* ``encode``: the Avro encoding every change already pays (the baseline, same run);
* ``headers``: building its headers (processor/contract/cloudevents.py);
* ``headers_cold``: the same with every change in a second of its own and the per-second cache
  of ``ce_time`` emptied before each pass (the worst case);
* ``produce`` without / with those headers: librdkafka's ``produce`` into its local queue (the
  client points at a closed port, so nothing leaves; the queue is purged after each pass).

Also the bytes a change takes on the topic: key + value, and the headers (names and values,
without the record's per-header varints). Writes bench/results/cloudevents_bench.json. Not a test.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Producer  # noqa: E402

from processor.contract import cloudevents  # noqa: E402
from processor.contract.cloudevents import header_builder  # noqa: E402
from processor.contract.codec import encode_membership_change  # noqa: E402
from processor.contract.models import MembershipChange  # noqa: E402


def changes(n: int, seconds_per_change: float = 0.2) -> list[MembershipChange]:
    return [MembershipChange(f"{i:016x}", "site-7", f"seg-{i % 50}", f"user-{i // 5}",
                             "ADDED" if i % 3 else "REMOVED",
                             "USER_UPDATED", f"ev-{i // 5:012x}", (f"rule-{i % 50}",),
                             1_796_400_000_123 + int(i * seconds_per_change) * 1000, 1_796_400_000_500 + i,
                             (("department", '"Sales"'), ("city", '"Paris"')))
            for i in range(n)]


def best(passes: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    chs = changes(a.records)
    build = header_builder(False)
    keys = [f"{c.site_id}:{c.user_id}".encode() for c in chs]
    values = [encode_membership_change(c) for c in chs]
    hdrs = [build(c) for c in chs]
    p = Producer({"bootstrap.servers": f"127.0.0.1:{closed_port()}", "log_level": 0,
                  "queue.buffering.max.messages": a.records * 2, "queue.buffering.max.kbytes": 2 << 20})

    def produce(with_headers: bool) -> Callable[[], None]:
        def run() -> None:
            for k, v, h in zip(keys, values, hdrs):
                p.produce("changes", v, k, headers=h if with_headers else None)
            p.purge()
            p.poll(0)  # serve the purged records' reports: their queue slots are freed
        return run

    cold = changes(a.records, seconds_per_change=1)

    def build_cold() -> None:
        cloudevents._second.cache_clear()
        for c in cold:
            build(c)

    secs = {
        "encode": best(a.repeats, lambda: [encode_membership_change(c) for c in chs]),
        "headers": best(a.repeats, lambda: [build(c) for c in chs]),
        "headers_cold": best(a.repeats, build_cold),
        "produce": best(a.repeats, produce(False)),
        "produce_with_headers": best(a.repeats, produce(True)),
    }
    per = {k: round(v / a.records * 1e6, 3) for k, v in secs.items()}
    record_bytes = sum(len(k) + len(v) for k, v in zip(keys, values)) / a.records
    header_bytes = sum(len(n) + len(v) for h in hdrs for n, v in h) / a.records
    out: dict[str, Any] = {
        "records": a.records,
        "us_per_record": per,
        "headers_vs_encode": round(per["headers"] / per["encode"], 3),
        "headers_cold_vs_encode": round(per["headers_cold"] / per["encode"], 3),
        "produce_headers_extra_us": round(per["produce_with_headers"] - per["produce"], 3),
        "produce_with_headers_vs_without": round(per["produce_with_headers"] / per["produce"], 3),
        "bytes_key_value": round(record_bytes, 1),
        "bytes_headers": round(header_bytes, 1),
    }
    print(json.dumps(out, indent=2))
    (ROOT / "bench" / "results" / "cloudevents_bench.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
