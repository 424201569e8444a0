"""Member search and CSV export at 100,000 stored users (issue 21, part 1). Not a test.

    .venv/bin/python bench/people_bench.py [--users 100000] [--workers 1] [--repeat 100]

Starts the embedded broker and real workers and loads N users, every one a member of one
segment, with names and e-mail addresses (one first name in 100, one last name in 250). Then,
against the same worker in the same run:

* ``members?q=`` p50/p99, per kind of term: a common first name (its 50 first matches end the
  page early), one user's e-mail prefix and a term nobody has (both read the whole segment);
  baseline: the plain members page (limit 50) at random cursors.
* ``members.csv``: rows per second of the whole download; baseline: a bare scan of the same keys
  (every member entry of the segment and its user state, read from the workers' RocksDB after
  they stopped, no decoding, no HTTP), and the same scan decoding each profile.

Writes bench/results/people_bench.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness lives in tests/support, beside the package

from rocksdict import Options, Rdict  # noqa: E402

from processor.api.auth import make_token  # noqa: E402
from processor.state.reads import HandleScan  # noqa: E402
from processor.state.user_state import decode_names  # noqa: E402
from tests.support.harness import TEST_JWT_SECRET, Cluster, make_event  # noqa: E402
from bench.bench_support import sales_segment  # noqa: E402

SITE = "bench"
SEG = "all"
FIRST = [f"{a}{b}" for a in ("Ma", "Jo", "An", "El", "Lu", "Sa", "Da", "Ka", "Ro", "Ni")
         for b in ("ria", "han", "na", "ise", "cas", "rah", "vid", "tja", "bert", "els")]  # 100
LAST = [f"{a}{b}" for a in ("Mül", "Schm", "Garc", "Rossi", "Dub", "Nov", "Kow", "Jans", "Ols", "Pet")
        for b in ("ler", "idt", "ía", "ni", "ois", "ak", "alski", "sen", "son", "rov", "ek", "as", "ero",
                  "ova", "ini", "ard", "ić", "an", "ens", "ez", "o", "i", "a", "ot", "us")]  # 250


def person(i: int) -> dict[str, Any]:
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    return {"firstname": first, "lastname": last, "email": f"{first}.{last}{i}@example.org".lower(),
            "department": "Sales", "city": "Lyon", "country": "FR", "institution": "Université de Lyon",
            "lang": "fr", "auth": "manual", "username": f"{first}.{last}{i}".lower(), "idnumber": f"E{i:07d}"}


def timed(url: str, token: str) -> tuple[float, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        body = r.read()
    return (time.perf_counter() - t) * 1000, body


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"n": len(xs), "p50_ms": round(statistics.median(xs), 1),
            "p99_ms": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 1), "max_ms": round(xs[-1], 1)}


def cursor(user: str) -> str:
    return base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")


def bare_scan(dbs: list[Path], decode: bool) -> tuple[int, float]:
    handles = [Rdict(str(p), Options(raw_mode=True)) for p in dbs]
    try:
        t = time.perf_counter()
        n = 0
        for _, _, raw in HandleScan(handles, SITE, lambda: True).segment_members(SEG):
            if decode and raw:
                decode_names(raw)
            n += 1
        return n, time.perf_counter() - t
    finally:
        for h in handles:
            h.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=100, help="requests per kind of search and for the baseline")
    ap.add_argument("--exports", type=int, default=3)
    args = ap.parse_args()
    rnd = random.Random(21)
    c = Cluster(Path(tempfile.mkdtemp(prefix="people-bench-")), app_id="people-bench")
    try:
        for i in range(args.workers):
            c.start_worker(f"w{i}")
        sales_segment(c, SITE, SEG, "All", 180)
        t0 = time.time()
        for i in range(args.users):
            c.producer.user_event(make_event(SITE, f"u{i:07d}", **person(i)))
        c.producer.flush()
        while len(c.poll().changes) < args.users:
            time.sleep(0.5)
        load_s = time.time() - t0
        tok = make_token(TEST_JWT_SECRET, "bench", SITE, ["site_admin"], ttl_s=7200)
        base = c.workers[0].url
        members = f"{base}/sites/{SITE}/segments/{SEG}/members"
        while json.loads(timed(f"{base}/sites/{SITE}/segments", tok)[1])["segments"][0]["member_count"] < args.users:
            time.sleep(1)
        time.sleep(2)

        for _ in range(5):  # warm-up
            timed(f"{members}?limit=50", tok)
        plain = [timed(f"{members}?limit=50&cursor={cursor(f'u{rnd.randrange(args.users):07d}')}", tok)[0]
                 for _ in range(args.repeat)]
        kinds = {
            "common first name": lambda: FIRST[rnd.randrange(len(FIRST))].lower()[:4],
            "one user's e-mail prefix": lambda: person(rnd.randrange(args.users))["email"].split("@")[0],
            "nobody": lambda: f"zz{rnd.randrange(10**6)}",
        }
        search: dict[str, list[float]] = {}
        hits: dict[str, list[int]] = {}
        for kind, term in kinds.items():
            search[kind], hits[kind] = [], []
            for _ in range(args.repeat):
                ms, body = timed(f"{members}?limit=50&q={urllib.request.quote(term())}", tok)
                search[kind].append(ms)
                hits[kind].append(len(json.loads(body)["members"]))
        every = [x for xs in search.values() for x in xs]

        exports = []
        rows = 0
        for _ in range(args.exports):
            ms, body = timed(f"{base}/sites/{SITE}/segments/{SEG}/members.csv", tok)
            rows = body.count(b"\r\n") - 1
            exports.append(ms)
        assert rows == args.users, rows
        export_best_s = min(exports) / 1000

        for w in c.workers:
            w.stop()
        dbs = sorted(p for w in c.workers for p in w.state_dir.rglob("users-*.db"))
        bare_n, bare_s = bare_scan(dbs, decode=False)
        dec_n, dec_s = bare_scan(dbs, decode=True)
        assert bare_n == dec_n == args.users
        res = {
            "users": args.users, "workers": args.workers, "load_seconds": round(load_s, 1),
            "members_page_baseline": summary(plain),
            "search": {k: {**summary(v), "hits_per_page_median": statistics.median(hits[k])}
                       for k, v in search.items()},
            "search_all_kinds": summary(every),
            "ratio_search_p99_to_page_p99": round(summary(every)["p99_ms"] / summary(plain)["p99_ms"], 1),
            "ratio_search_p50_to_page_p50": round(summary(every)["p50_ms"] / summary(plain)["p50_ms"], 1),
            "export": {"rows": rows, "seconds": [round(x / 1000, 2) for x in exports],
                       "rows_per_second_best": round(rows / export_best_s),
                       "bytes": len(body)},
            "bare_scan": {"rows_per_second": round(bare_n / bare_s),
                          "with_profile_decoding_rows_per_second": round(dec_n / dec_s)},
            "ratio_export_to_bare_scan": round(rows / export_best_s / (bare_n / bare_s), 3),
            "ratio_export_to_bare_scan_with_decoding": round(rows / export_best_s / (dec_n / dec_s), 3),
        }
        print(json.dumps(res, indent=2))
        out = Path(__file__).parent / "results" / "people_bench.json"
        out.write_text(json.dumps(res, indent=2) + "\n")
    finally:
        c.close()


if __name__ == "__main__":
    main()
