"""Scale-out: the streaming workload with 1, 2 and 4 workers on 8 partitions (issue 6, bench 4).
Not a test.

    .venv/bin/python bench/scaleout_bench.py [--events 20000] [--workers 1,2,4]

For each worker count, in the same run and on the same broker: a fresh app id (so a fresh
consumer group and table), the same catalog (1,000 selective rules, as bench/streaming_bench.py)
and the same input events on a fresh input topic set. Workers are started and every one is
ready (partitions assigned, tables recovered) before the events are produced; throughput is
events / time until the workers' counters account for every event. CPU per event is the sum of
the workers' CPU time over the events. This machine has 2 cores shared with the broker, so
throughput is expected to saturate; flat CPU per event shows that adding workers adds no
per-event cost. Writes bench/results/scaleout_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import streaming_bench as sb  # noqa: E402  (catalog, events, /proc stats)

from processor.broker import EmbeddedBroker, free_port  # noqa: E402
from processor.config import Settings, Topics  # noqa: E402
from processor.contract.codec import encode_command, encode_user_event  # noqa: E402
from processor.topics import ensure_topics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def readyz(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return json.load(r)
    except urllib.error.HTTPError as err:  # 503 while not ready: same body
        return json.load(err)
    except (OSError, ValueError):
        return {}


def counter(body: dict, prefix: str) -> int:
    return sum(v for k, v in body.get("counters", {}).items() if k.startswith(prefix))


def run(bs: str, work: Path, n_workers: int, msgs: list[tuple[bytes, bytes]], cmds: list, tag: str) -> dict:
    topics = Topics(user_events=f"{tag}.user-events", commands=f"{tag}.commands",
                    membership_changes=f"{tag}.changes", command_results=f"{tag}.results",
                    dead_letters=f"{tag}.dlq", catalog=f"{tag}.catalog", control=f"{tag}.control")
    settings = Settings(bootstrap_servers=bs, app_id=tag, topics=topics, session_timeout_s=6)
    ensure_topics(settings)
    env_topics = {"TOPIC_USER_EVENTS": topics.user_events, "TOPIC_COMMANDS": topics.commands,
                  "TOPIC_MEMBERSHIP_CHANGES": topics.membership_changes,
                  "TOPIC_COMMAND_RESULTS": topics.command_results, "TOPIC_DEAD_LETTERS": topics.dead_letters,
                  "TOPIC_CATALOG": topics.catalog, "TOPIC_CONTROL": topics.control}
    cp = Producer({"bootstrap.servers": bs})
    for cmd in cmds:
        cp.produce(topics.commands, key=sb.SITE.encode(), value=encode_command(cmd))
    cp.flush(60)
    procs, ports = [], []
    try:
        for i in range(n_workers):
            port = free_port()
            env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bs, WEB_PORT=str(port), STATE_DIR=str(work / tag / f"w{i}"),
                       APP_ID=tag, BROKER_SESSION_TIMEOUT="6", LOG_FORMAT="text", FETCH_MAX_WAIT_MS="50", **env_topics)
            procs.append(subprocess.Popen([sys.executable, "-m", "processor", "worker", "-l", "warn"], env=env,
                                          stdout=open(work / f"{tag}-w{i}.log", "wb"), stderr=subprocess.STDOUT))
            ports.append(port)
        deadline = time.time() + 300
        while time.time() < deadline:
            bodies = [readyz(p) for p in ports]
            if all(b.get("ready") for b in bodies) and sum(counter(b, "commands.") for b in bodies) >= len(cmds):
                break
            assert all(p.poll() is None for p in procs), "a worker died"
            time.sleep(0.5)
        time.sleep(8)  # let the group settle (joins of later workers trigger rebalances)
        while not all(readyz(p).get("ready") for p in ports):
            time.sleep(0.5)
        cpu0 = sum(sb.proc_stats(p.pid)["cpu_s"] for p in procs)
        t = time.perf_counter()
        sb.produce(bs, topics.user_events, msgs)
        while sum(counter(readyz(p), "user_events.") for p in ports) < len(msgs):
            assert all(p.poll() is None for p in procs), "a worker died"
            time.sleep(0.2)
        dt = time.perf_counter() - t
        cpu = sum(sb.proc_stats(p.pid)["cpu_s"] for p in procs) - cpu0
        per_worker = [counter(readyz(p), "user_events.") for p in ports]
        return {"workers": n_workers, "events_per_s": round(len(msgs) / dt), "seconds": round(dt, 1),
                "cpu_ms_per_event": round(cpu / len(msgs) * 1000, 3), "events_per_worker": per_worker}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scaleout-bench-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    try:
        events = sb.make_events(args.events, 7, 20_000)
        msgs = [(f"{e.site_id}:{e.user_id}".encode(), encode_user_event(e)) for e in events]
        cmds = sb.catalog_commands(args.rules, 3, selective=True)
        results = []
        for n in (int(x) for x in args.workers.split(",")):
            r = run(broker.bootstrap, work, n, msgs, cmds, f"scale{n}")
            print(json.dumps(r), flush=True)
            results.append(r)
        base = results[0]
        for r in results:
            r["throughput_vs_first"] = round(r["events_per_s"] / base["events_per_s"], 2)
            r["cpu_per_event_vs_first"] = round(r["cpu_ms_per_event"] / base["cpu_ms_per_event"], 2)
        res = {"events": args.events, "rules": args.rules, "partitions": 8, "cores": os.cpu_count(), "runs": results}
        print(json.dumps(res, indent=2))
        (ROOT / "bench" / "results" / "scaleout_bench.json").write_text(json.dumps(res, indent=2) + "\n")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
