"""Moodle connector throughput against the Moodle web-service double (docs/performance.md).

Measures, in one run on the embedded broker with one worker:

1. ``moodle import`` of N users (default 10,000): users/s from its own report;
2. ``moodle reconcile`` of a managed segment with N members against a cohort holding the same N
   (zero drift: every member compared): seconds, best of 3;
3. ``moodle sync`` applying the same N ADDED changes, **batched** (100 members per call) and
   **unbatched** (1 per call) into two empty cohorts: changes/s between the first and the last
   applied change (from the sync's own ``moodle_sync_applied_total``), and their ratio.

The double runs in its own process (``--serve-double``), so it does not share the bench's GIL;
it is Python, so its per-call cost is not a real Moodle's (a PHP request with a DB transaction,
typically 20-100 ms): the ratio batched/unbatched is the number to carry over, not the absolutes.

    .venv/bin/python bench/moodle_bench.py [--users 10000] [--out bench/results/moodle_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def serve_double(users: int) -> None:
    from tests.support.moodle_double import MoodleDouble

    d = MoodleDouble()
    for c in ("sales", "batched", "unbatched"):
        d.add_cohort(c, c.title())
    sales = d.cohort("sales").id
    for i in range(users):
        u = d.add_user(f"user{i:06d}", firstname=f"F{i}", lastname=f"L{i}", email=f"user{i}@example.org",
                       department="Sales", city="Oslo", lastaccess=1764790000 + i)
        d.members[sales][u.id] = 0.0
    d.start()
    print(json.dumps({"url": d.url, "token": d.token}), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return sum(float(line.rsplit(" ", 1)[1]) for line in r.read().decode().splitlines() if line.startswith(name))


def run_sync(env: dict[str, str], n: int, group: str, cohort: str, batch: int) -> dict[str, float]:
    from processor.broker import free_port

    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "processor", "moodle", "sync", "--port", str(port), "--group", group,
                          "--cohort", f"sales={cohort}", "--batch-size", str(batch)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = last = None
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            try:
                done = metric(port, "moodle_sync_applied_total")
            except OSError:
                time.sleep(0.2)
                continue
            now = time.monotonic()
            if done and first is None:
                first = now
            if done >= n:
                last = now
                break
            time.sleep(0.05)
        calls = metric(port, 'moodle_sync_moodle_calls_total{function="core_cohort_add_cohort_members"')
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    assert first is not None and last is not None, "sync did not apply every change"
    secs = last - first
    return {"changes": n, "seconds": round(secs, 2), "changes_per_s": round(n / secs, 1), "calls": calls,
            "batch_size": batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "moodle_bench.json")
    ap.add_argument("--serve-double", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_double:
        serve_double(args.users)
        return

    from tests.support.harness import TEST_JWT_SECRET, Cluster, make_command

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # clean up on kill
    n = args.users
    double = subprocess.Popen([sys.executable, __file__, "--serve-double", "--users", str(n)], stdout=subprocess.PIPE)
    moodle = json.loads(double.stdout.readline())  # type: ignore[union-attr]
    site = "moodle-bench"
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp))
        try:
            w = cluster.start_worker("w0")
            t = cluster.settings.topics
            env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=cluster.settings.bootstrap_servers,
                       TOPIC_MEMBERSHIP_CHANGES=t.membership_changes, TOPIC_DEAD_LETTERS=t.dead_letters,
                       BROKER_SESSION_TIMEOUT=str(cluster.settings.session_timeout_s), API_URL=w.url,
                       ADMIN_JWT_SECRET=TEST_JWT_SECRET, MOODLE_URL=moodle["url"], MOODLE_TOKEN=moodle["token"],
                       MOODLE_SITE_ID=site, PYTHONUNBUFFERED="1")

            def cli(*a: str) -> dict:
                out = subprocess.run([sys.executable, "-m", "processor", "moodle", *a, "--json"], env=env,
                                     capture_output=True, timeout=1800)
                lines = out.stdout.decode().strip().splitlines()
                if not lines:
                    raise RuntimeError(f"moodle {a} exited {out.returncode}: {out.stderr.decode()[-3000:]}")
                return json.loads(lines[-1])

            # wait for the worker's API
            from tests.support.harness import eventually
            eventually(lambda: _ok(w.url + "/readyz"), 120, 0.5, "worker ready")
            started = time.monotonic()
            imp = cli("import", "--page-size", "100", "--gap", "500")
            import_wall = time.monotonic() - started
            cmds = [make_command(site, "EnableSegmentAutomation", segment_id="sales"),
                    make_command(site, "CreateRule", rule_id="r", segment_id="sales", name="r",
                                 condition={"field": "department", "op": "equals", "value": "Sales"})]
            for c in cmds:
                cluster.producer.command(c)
            cluster.producer.flush()
            cluster.wait_results([c.command_id for c in cmds], 120)
            cluster.wait(lambda: sum(1 for c in cluster.changes_for(site) if c.change == "ADDED") >= n, 600,
                         "every user ADDED to sales")
            reconcile = []
            for _ in range(3):
                rep = cli("reconcile", "--segment", "sales")
                assert rep["drift"] == 0, rep
                reconcile.append(rep["seconds"])
            batched = run_sync(env, n, "bench-batched", "batched", 100)
            unbatched = run_sync(env, n, "bench-unbatched", "unbatched", 1)
        finally:
            cluster.close()
            double.send_signal(signal.SIGTERM)
            double.wait(30)
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPU, {platform.python_version()}",
        "users": n,
        "import": {"users_read": imp["users_read"], "published": imp["published"], "seconds": imp["seconds"],
                   "users_per_s": imp["users_per_second"], "wall_seconds_incl_start": round(import_wall, 2)},
        "reconcile_10k": {"members": n, "seconds_runs": reconcile, "best_seconds": min(reconcile)},
        "sync_batched": batched, "sync_unbatched": unbatched,
        "sync_batched_over_unbatched": round(batched["changes_per_s"] / unbatched["changes_per_s"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
