"""Event latency while rule previews scan a large site (issue 17). Not a test.

    .venv/bin/python bench/preview_load_bench.py [--users 200000] [--rate 50] [--seconds 45]

One embedded broker and one worker holding ``--users`` stored users of one site. Then three
phases of the same steady load (``--rate`` new users/s, each matching a managed rule, so each
causes one membership change), same run, same worker:

  A  no previews;
  B  previews over every stored user run back to back (POST /sites/bench/rules/preview, one at a
     time, as an admin clicking "Preview" repeatedly);
  A2 no previews again (drift check).

Reported per phase: event latency p50/p99 (produce time -> change read by a consumer), the
worker's web-server latency (GET /healthz every 50 ms: it runs on the worker's event loop, so
its max is the longest stall the loop saw, plus one request), and for B each preview's time
and status. Target (issue 17): B's p99 within 2x of A's. Writes bench/results/preview_load_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness lives in tests/support, beside the package

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from processor.api.auth import make_token  # noqa: E402
from processor.client import ContractProducer  # noqa: E402
from processor.contract.codec import decode_membership_change, encode_user_event  # noqa: E402
from processor.contract.models import UserEvent  # noqa: E402
from tests.support.harness import TEST_JWT_SECRET, Cluster  # noqa: E402
from bench.bench_support import sales_segment  # noqa: E402

SITE = "bench"
DEPARTMENTS = ("Sales", "HR", "IT", "Ops", "Finance", "Legal")
CITIES = ("Paris", "Oslo", "Lima", "Pune", "Kyiv", "Oran", "Bern", "Riga")


def profile(rng: random.Random, department: str | None = None) -> dict[str, Any]:
    return {"department": department or rng.choice(DEPARTMENTS), "city": rng.choice(CITIES),
            "country": rng.choice(("FR", "NO", "PE", "IN", "UA", "DZ", "CH", "LV")),
            "institution": f"inst-{rng.randrange(40)}", "email": f"u{rng.randrange(10**9)}@example.org",
            "firstname": "Ann", "lastname": f"L{rng.randrange(10**6)}", "lang": rng.choice(("en", "fr", "nb")),
            "auth": "manual", "suspended": False}


def pct(xs: list[float], p: float) -> float | None:
    xs = sorted(xs)
    return round(xs[max(0, int(len(xs) * p) - 1)], 1) if xs else None


def readyz_counter(url: str, prefix: str) -> int:
    with urllib.request.urlopen(url + "/readyz", timeout=10) as r:
        data = json.loads(r.read())
    return sum(v for k, v in data.get("counters", {}).items() if k.startswith(prefix))


class HealthSampler(threading.Thread):
    """GET /healthz every ``interval`` s; records each answer's latency (ms)."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=60) as r:
                    r.read()
                self.samples.append((time.perf_counter() - t) * 1000)
            except OSError:
                self.samples.append(60_000.0)
            self.stop.wait(self.interval)


class Previewer(threading.Thread):
    """Previews back to back until stopped; records (seconds, status, evaluated) of each."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.runs: list[tuple[float, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        body = json.dumps({"segment_id": "sales", "rule_id": "candidate",
                           "condition": 'department == "HR" and city in ["Paris", "Oslo"]'}).encode()
        while not self.stop.is_set():
            req = urllib.request.Request(f"{self.url}/sites/{SITE}/rules/preview", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=300) as r:
                    status, answer = r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                status, answer = e.code, {}
            self.runs.append((time.perf_counter() - t, status, int(answer.get("evaluated", 0))))


def phase(name: str, c: Cluster, url: str, rate: int, seconds: float, token: str | None,
          seq: list[int]) -> dict[str, Any]:
    """``seconds`` of ``rate`` new users/s; each is a Sales user, so each causes one ADDED change."""
    bs = c.settings.bootstrap_servers
    topic = c.settings.topics.membership_changes
    lc = Consumer({"bootstrap.servers": bs, "group.id": f"pl-{uuid.uuid4().hex}", "fetch.wait.max.ms": 10,
                   "enable.auto.commit": False})
    lc.assign([TopicPartition(topic, p, -1) for p in range(c.settings.partitions)])
    lc.consume(1000, 1.0)
    lp = Producer({"bootstrap.servers": bs, "linger.ms": 0})
    rng = random.Random(seq[0])
    sent: dict[str, int] = {}
    got: dict[str, int] = {}
    health = HealthSampler(url)
    previews = Previewer(url, token) if token else None
    health.start()
    if previews:
        previews.start()
        time.sleep(1.0)  # the first preview is under way before the samples start
    load0 = os.getloadavg()[0]
    start = time.time()
    n = 0
    while time.time() - start < seconds:
        while n < int((time.time() - start) * rate):
            uid = f"lat-{seq[0]:07d}"
            seq[0] += 1
            e = UserEvent(f"ev-{uid}", "USER_CREATED", SITE, uid, int(time.time() * 1000), profile(rng, "Sales"))
            lp.produce(c.settings.topics.user_events, key=f"{SITE}:{uid}".encode(), value=encode_user_event(e))
            sent[uid] = e.occurred_at
            n += 1
        lp.poll(0)
        for m in lc.consume(500, 0.005):
            if not m.error():
                ch = decode_membership_change(m.value())
                if ch.user_id in sent and ch.user_id not in got:
                    got[ch.user_id] = int(time.time() * 1000)
    lp.flush(30)
    end = time.time() + 15
    while time.time() < end and len(got) < len(sent):
        for m in lc.consume(500, 0.1):
            if not m.error():
                ch = decode_membership_change(m.value())
                if ch.user_id in sent and ch.user_id not in got:
                    got[ch.user_id] = int(time.time() * 1000)
    if previews:
        previews.stop.set()
        previews.join(330)
    health.stop.set()
    health.join(70)
    lc.close()
    lat = [got[u] - sent[u] for u in got]
    res: dict[str, Any] = {"phase": name, "seconds": seconds, "rate_eps": rate, "sent": len(sent),
                           "changes_read": len(got), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
                           "max_ms": pct(lat, 1.0), "healthz": {"samples": len(health.samples),
                                                             "p50_ms": pct(health.samples, 0.5),
                                                             "p99_ms": pct(health.samples, 0.99),
                                                             "max_ms": pct(health.samples, 1.0)},
                           "loadavg_1m_before": round(load0, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)}
    if previews:
        ok = [r for r in previews.runs if r[1] == 200]
        res["previews"] = {"runs": len(previews.runs), "ok": len(ok),
                           "statuses": sorted({r[1] for r in previews.runs}),
                           "evaluated": ok[0][2] if ok else None,
                           "seconds_each": [round(r[0], 2) for r in previews.runs]}
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--rate", type=int, default=50, help="new users per second during each phase")
    ap.add_argument("--seconds", type=float, default=45)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "preview_load_bench.json"))
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the worker (e.g. SCAN_SLICE_MS=5)")
    args = ap.parse_args()
    os.environ.update(dict(kv.split("=", 1) for kv in args.env))
    import tempfile

    c = Cluster(Path(tempfile.mkdtemp(prefix="preview-bench-")), app_id="preview-bench")
    res: dict[str, Any] = {"users": args.users, "rate_eps": args.rate, "nproc": os.cpu_count(),
                           "worker_env": args.env}
    try:
        w = c.start_worker("w0")
        sales_segment(c, SITE, "sales", "Sales", 180)
        t0 = time.time()
        bulk = ContractProducer(c.settings.bootstrap_servers, c.settings.topics, linger_ms=100)
        rng = random.Random(11)
        for i in range(args.users):
            e = UserEvent(f"load-{i}", "USER_CREATED", SITE, f"user{i:07d}", int(time.time() * 1000), profile(rng))
            bulk.user_event(e)
        bulk.flush(300)
        while readyz_counter(w.url, "user_events.") < args.users:
            time.sleep(2)
        res["load_seconds"] = round(time.time() - t0, 1)
        print(f"loaded {args.users} users in {res['load_seconds']} s", flush=True)
        time.sleep(3)
        token = make_token(TEST_JWT_SECRET, "bench", SITE, ["site_admin"], ttl_s=24 * 3600)
        seq = [0]
        phase("warm-up", c, w.url, args.rate, 5, None, seq)
        res["phases"] = [phase("A: no previews", c, w.url, args.rate, args.seconds, None, seq),
                         phase("B: previews back to back", c, w.url, args.rate, args.seconds, token, seq),
                         phase("A2: no previews again", c, w.url, args.rate, args.seconds, None, seq)]
        a, b, a2 = res["phases"]
        base_p99 = max(a["p99_ms"] or 0, a2["p99_ms"] or 0)
        res["p99_ratio_B_over_A"] = round(b["p99_ms"] / base_p99, 2) if b["p99_ms"] and base_p99 else None
        res["target"] = "p99 with previews within 2x of p99 without (same run)"
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps({k: v for k, v in res.items() if k != "phases"}, indent=2))
    finally:
        c.close()


if __name__ == "__main__":
    main()
