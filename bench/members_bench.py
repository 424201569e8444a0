"""Members tab latency: first page of a 50,000-member segment (issue 5).

    .venv/bin/python bench/members_bench.py [--users 50000] [--workers 1]

Starts the embedded broker and real workers, loads N matching users, then times
GET /sites/{site}/segments/{seg}/members?limit=50 (first page and a deep cursor)
against GET /healthz on the same server in the same run (baseline: the web stack
itself). Writes bench/results/members_bench.json. Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness lives in tests/support, beside the package

from processor.api.auth import make_token  # noqa: E402
from tests.support.harness import TEST_JWT_SECRET, Cluster, make_event  # noqa: E402
from bench.bench_support import sales_segment  # noqa: E402


def timed(url: str, token: str | None, n: int) -> list[float]:
    out = []
    for _ in range(n):
        req = urllib.request.Request(url)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": round(statistics.median(xs), 2), "p95_ms": round(xs[int(len(xs) * 0.95) - 1], 2),
            "max_ms": round(xs[-1], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    c = Cluster(Path(tempfile.mkdtemp(prefix="members-bench-")), app_id="members-bench")
    try:
        for i in range(args.workers):
            c.start_worker(f"w{i}")
        site = "bench"
        sales_segment(c, site, "all", "All", 120)
        t0 = time.time()
        for i in range(args.users):
            c.producer.user_event(make_event(site, f"user{i:07d}", department="Sales"))
        c.producer.flush()
        seen = 0
        while seen < args.users:
            seen = len(c.poll().changes)
            time.sleep(0.5)
        load_s = time.time() - t0
        time.sleep(2)
        tok = make_token(TEST_JWT_SECRET, "bench", site, ["site_admin"])
        base = c.workers[0].url
        timed(f"{base}/healthz", None, 5)
        health = timed(f"{base}/healthz", None, args.repeat)
        first = timed(f"{base}/sites/{site}/segments/all/members?limit=50", tok, args.repeat)
        import base64

        cur = base64.urlsafe_b64encode(f"user{args.users // 2:07d}".encode()).decode().rstrip("=")
        deep = timed(f"{base}/sites/{site}/segments/all/members?limit=50&cursor={cur}", tok, args.repeat)
        counts = timed(f"{base}/sites/{site}/segments", tok, 10)
        res = {
            "users": args.users, "workers": args.workers, "load_seconds": round(load_s, 1),
            "load_events_per_second": round(args.users / load_s),
            "healthz": summary(health), "members_first_page": summary(first),
            "members_deep_cursor": summary(deep), "segments_with_counts": summary(counts),
            "ratio_first_page_to_healthz": round(statistics.median(first) / statistics.median(health), 1),
        }
        print(json.dumps(res, indent=2))
        out = Path(__file__).parent / "results" / "members_bench.json"
        out.write_text(json.dumps(res, indent=2) + "\n")
    finally:
        c.close()


if __name__ == "__main__":
    main()
