"""History index: storage per 100k users, indexing rate, query latency (issue 21 part 4).

    .venv/bin/python bench/history_bench.py [--users 100000] [--changes-per-user 4] [--segments 10]

In process, no broker: N users' membership changes (each with evidence, as the engine writes
them now) are encoded as they are on the topic, then fed in batches of 2,000 through the history
index's own edge code (processor/history_reader.py ``HistoryIndex._index``: decode, index,
one atomic RocksDB batch with the positions) into a fresh RocksDB. Reported:

* storage: the index directory after a flush and a full compaction, per change and per 100k
  users, against the same changes' bytes on the topic (key + value) as the baseline;
* indexing rate, against decoding the same records alone (baseline, same run);
* query latency: a user's history (first page), a segment's first page of 50, a segment's
  90-day series (the reads of processor/history/reads.py, in process: the API adds its HTTP
  cost, see members_bench.py for that).

Writes bench/results/history_bench.json. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from processor.config import Settings  # noqa: E402
from processor.contract.codec import decode_membership_change, encode_membership_change  # noqa: E402
from processor.contract.models import MembershipChange  # noqa: E402
from processor.history.settings import HistorySettings  # noqa: E402
from processor.history_reader import BATCH, HistoryIndex  # noqa: E402
from processor.membership.engine import change_id  # noqa: E402

DAY = 86_400_000
DEPTS = ["Sales", "Engineering", "Marketing", "Finance", "Human Resources", "Support", "Research", "Legal"]
CITIES = ["Oslo", "Paris", "Berlin", "Lisbon", "Madrid", "Rome", "Vienna", "Prague", "Dublin", "Warsaw"]


class Msg:
    """What HistoryIndex._index reads of a confluent-kafka message."""

    __slots__ = ("_t", "_p", "_o", "_v")

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def error(self) -> None:
        return None


def workload(users: int, per_user: int, segments: int, now: int, seed: int = 7) -> list[MembershipChange]:
    """Per user, ``per_user`` changes alternating ADDED/REMOVED over a few segments, spread over the
    last 80 days, with the evidence a department/city rule records; cause mixes as in production
    (mostly events, some commands)."""
    rng = random.Random(seed)
    out = []
    for u in range(users):
        user = f"user-{u:07d}"
        member: dict[str, bool] = {}
        prev: dict[str, str] = {}
        t = now - 80 * DAY + rng.randrange(DAY)
        for _ in range(per_user):
            seg = f"seg-{rng.randrange(segments)}"
            kind = "REMOVED" if member.get(seg) else "ADDED"
            member[seg] = not member.get(seg)
            t += rng.randrange(1, 15 * DAY // max(1, per_user))
            cmd = rng.random() < 0.3
            cause_id = f"cmd-{rng.randrange(500):06d}" if cmd else f"moodle-1-{rng.randrange(10**9)}"
            cid = change_id(cause_id, "bench", seg, user, kind, prev.get(seg, ""))
            prev[seg] = cid
            evidence = (("city", json.dumps(rng.choice(CITIES))), ("department", json.dumps(rng.choice(DEPTS))))
            out.append(MembershipChange(cid, "bench", seg, user, kind, "RULE_UPDATED" if cmd else "USER_UPDATED",
                                        cause_id, ("rule-1",) if kind == "ADDED" else (), t - 50, t, evidence))
    out.sort(key=lambda c: c.emitted_at)  # the topic's order, roughly
    return out


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))], 3)


def timed(fn: Any, n: int) -> dict[str, float]:
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(xs), 3), "p99_ms": pct(xs, 0.99)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--changes-per-user", type=int, default=4)
    ap.add_argument("--segments", type=int, default=10)
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    now = int(time.time() * 1000)
    changes = workload(args.users, args.changes_per_user, args.segments, now)
    values = [encode_membership_change(c) for c in changes]
    topic_bytes = sum(len(v) + len(f"bench:{c.user_id}") for v, c in zip(values, changes))
    n = len(values)

    t = time.perf_counter()
    for v in values:
        decode_membership_change(v)
    decode_s = time.perf_counter() - t

    tmp = Path(tempfile.mkdtemp(prefix="history-bench-"))
    s = Settings(state_dir=tmp)
    ix = HistoryIndex(s, HistorySettings())
    ix.open()
    topic = s.topics.membership_changes
    msgs = [Msg(topic, i % 8, i // 8, v) for i, v in enumerate(values)]
    t = time.perf_counter()
    for i in range(0, n, BATCH):
        ix._index(msgs[i:i + BATCH], decode_membership_change, False)
    index_s = time.perf_counter() - t
    db = ix._db
    db.flush()
    db.compact_range(None, None)
    time.sleep(1)
    disk = du(ix.path)

    reads = ix.reads
    rng = random.Random(1)
    users = [f"user-{rng.randrange(args.users):07d}" for _ in range(args.queries)]
    it = iter(users * 2)
    q_user = timed(lambda: reads.user_history(db, "bench", next(it), 50), args.queries)
    q_seg = timed(lambda: reads.segment_history(db, "bench", f"seg-{rng.randrange(args.segments)}", 50),
                  args.queries // 4)
    q_series = timed(lambda: reads.series(db, "bench", f"seg-{rng.randrange(args.segments)}", now - 90 * DAY, now),
                     args.queries // 4)
    per_100k = disk / args.users * 100_000
    result = {
        "users": args.users, "changes_per_user": args.changes_per_user, "segments": args.segments, "changes": n,
        "storage": {
            "index_bytes": disk, "bytes_per_change": round(disk / n, 1),
            "mib_per_100k_users": round(per_100k / 2**20, 1),
            "topic_bytes_per_change": round(topic_bytes / n, 1),
            "index_to_topic_ratio": round(disk / topic_bytes, 2),
        },
        "indexing": {
            "changes_per_s": round(n / index_s), "decode_only_per_s": round(n / decode_s),
            "ratio_to_decode_only": round((n / index_s) / (n / decode_s), 3),
        },
        "queries_in_process": {"user_history_first_page": q_user, "segment_history_first_page": q_seg,
                               "segment_series_90_days": q_series},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    print(json.dumps(result, indent=1))
    out = ROOT / "bench" / "results" / "history_bench.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
