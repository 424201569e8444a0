"""Rebuild: `processor rebuild` over a backlog of user events vs a Faust pass-through agent
(issue 6, bench 3). Not a test.

    .venv/bin/python bench/rebuild_bench.py [--events 1000000] [--users 100000]

Same broker, same input bytes, same run:
  (b) the Faust pass-through agent (bench/passthrough_app.py) over the events: events/s;
  (r) `processor rebuild --emit snapshot` (the ops bulk path: confluent-kafka batch reads, state
      and outputs written directly) over the same events, with the catalog of 1,000 selective
      rules (bench/streaming_bench.py) decided by a worker that is then stopped: events/s.
Reports r/b (target >= 5) and the rebuild's report. Writes bench/results/rebuild_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import streaming_bench as sb  # noqa: E402

from processor.broker import EmbeddedBroker, free_port  # noqa: E402
from processor.config import Settings, Topics  # noqa: E402
from processor.contract.codec import encode_command, encode_user_event  # noqa: E402
from processor.rebuild import run_rebuild  # noqa: E402
from processor.topics import ensure_topics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU of this process and of its waited-for children (the rebuild's slice processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=None, help="rebuild processes (default: one per core)")
    ap.add_argument("--profile", action="store_true",
                    help="print the rebuild's cProfile top functions (runs it in this process: --jobs 1)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rebuild-bench-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    bs = broker.bootstrap
    res: dict[str, object] = {"events": args.events, "users": args.users, "rules": args.rules,
                              "cpus": os.cpu_count()}
    try:
        settings = Settings(bootstrap_servers=bs, app_id="bench-rebuild", topics=Topics(), session_timeout_s=6)
        ensure_topics(settings)
        admin = AdminClient({"bootstrap.servers": bs})
        for f in admin.create_topics([NewTopic("bench-in", 8, 1), NewTopic("bench-out", 8, 1)]).values():
            f.result()
        events = sb.make_events(args.events, 7, args.users)
        msgs = [(f"{e.site_id}:{e.user_id}".encode(), encode_user_event(e)) for e in events]
        del events

        # the catalog, decided by a worker that is then stopped
        port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bs, WEB_PORT=str(port), STATE_DIR=str(work / "w"),
                   APP_ID="bench-rebuild", BROKER_SESSION_TIMEOUT="6", LOG_FORMAT="text", FETCH_MAX_WAIT_MS="50")
        w = subprocess.Popen([sys.executable, "-m", "processor", "worker", "-l", "warn"], env=env,
                             stdout=open(work / "w.log", "wb"), stderr=subprocess.STDOUT)
        cp = Producer({"bootstrap.servers": bs})
        cmds = sb.catalog_commands(args.rules, 3, selective=True)
        for cmd in cmds:
            cp.produce(settings.topics.commands, key=sb.SITE.encode(), value=encode_command(cmd))
        cp.flush(60)
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if sb.counter(f"http://127.0.0.1:{port}", "commands.") >= len(cmds):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        time.sleep(5)  # backfill orders (empty: no users yet) processed and committed
        w.send_signal(signal.SIGTERM)
        w.wait(60)

        # the same bytes to the pass-through's input and to the processor's input
        sb.produce(bs, "bench-in", msgs)
        sb.produce(bs, settings.topics.user_events, msgs)
        n = len(msgs)
        del msgs

        # (b) Faust pass-through over the backlog
        res["passthrough_eps"], _ = sb.passthrough(bs, work, n)

        # (r) processor rebuild, in this process (and its slice processes)
        broker_cpu = _cpu_seconds(broker.proc.pid)  # type: ignore[union-attr]
        own_cpu = _own_cpu_seconds()
        t = time.perf_counter()
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            report = prof.runcall(run_rebuild, settings, "snapshot", jobs=1)
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
        else:
            report = run_rebuild(settings, "snapshot", jobs=args.jobs)
        dt = time.perf_counter() - t
        res["rebuild_cpu_seconds"] = round(_own_cpu_seconds() - own_cpu, 1)  # this process + the slices
        res["broker_cpu_seconds_during_rebuild"] = round(_cpu_seconds(broker.proc.pid) - broker_cpu, 1)  # type: ignore[union-attr]
        res["rebuild_eps"] = round(n / dt)
        res["rebuild_seconds"] = round(dt, 1)
        res["rebuild_report"] = report.as_dict()
        res["ratio_rebuild_over_passthrough"] = round(res["rebuild_eps"] / res["passthrough_eps"], 2)  # type: ignore[operator]
        res["target_ratio"] = 5
        print(json.dumps(res, indent=2))
        (ROOT / "bench" / "results" / "rebuild_bench.json").write_text(json.dumps(res, indent=2) + "\n")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
