"""Where a worker's CPU per event goes, by thread (the streaming workload of bench 1). Not a test.

    .venv/bin/python bench/worker_threads_bench.py [--events 20000] [--env NAME=VALUE]

Starts the embedded broker and one worker with the streaming bench's catalog (1,000 selective
rules), produces the events and reads /proc/<pid>/task/*/stat before and after: CPU per event of
the event loop's thread (handlers, Faust's delivery, the checkpoint), Faust's consumer thread
(aiokafka fetches), librdkafka's threads (the changelog, output and dead-letter clients) and
RocksDB's. Per-thread clocks are exact where a sampling profiler is not (py-spy pauses the process
and charges librdkafka's C calls to the Python frame above them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import streaming_bench as sb  # noqa: E402

from processor.broker import EmbeddedBroker  # noqa: E402
from processor.config import Settings, Topics  # noqa: E402
from processor.contract.codec import encode_user_event  # noqa: E402
from processor.topics import ensure_topics  # noqa: E402


def threads(pid: int) -> dict[tuple[str, str], float]:
    """(tid, name) -> CPU seconds of every thread of ``pid``."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (t / "stat").read_text().rsplit(")", 1)[1].split()
            out[(t.name, (t / "comm").read_text().strip())] = (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    a = ap.parse_args()
    args = argparse.Namespace(rules=1000, mix="selective", fetch_wait_ms=10, env=a.env)
    work = Path(tempfile.mkdtemp(prefix="worker-threads-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    try:
        s = Settings(bootstrap_servers=broker.bootstrap, app_id="bench-proc", topics=Topics(), session_timeout_s=6)
        ensure_topics(s)
        msgs = [(f"{e.site_id}:{e.user_id}".encode(), encode_user_event(e)) for e in sb.make_events(a.events, 7, 20_000)]
        w, url = sb.start_processor(broker.bootstrap, work, "proc", args, s)
        before = threads(w.pid)
        t = time.perf_counter()
        sb.produce(broker.bootstrap, s.topics.user_events, msgs)
        while sb.counter(url, "user_events.") < len(msgs):
            time.sleep(0.1)
        dt = time.perf_counter() - t
        after = threads(w.pid)
        w.kill()
        n = len(msgs)
        used = {k: after[k] - before.get(k, 0.0) for k in after}
        print(f"{n / dt:,.0f} events/s; worker CPU {sum(used.values()) / n * 1e6:.0f} µs per event")
        main_tid = str(w.pid)
        groups: dict[str, float] = {}
        for (tid, name), cpu in used.items():
            label = "event loop (main thread)" if tid == main_tid else (
                "librdkafka" if name.startswith("rdk:") else "rocksdb" if name.startswith("rocksdb") else
                "other Python threads (Faust's consumer, helpers)")
            groups[label] = groups.get(label, 0.0) + cpu
        for label, cpu in sorted(groups.items(), key=lambda kv: -kv[1]):
            print(f"  {label:48s} {cpu / n * 1e6:6.0f} µs per event")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
