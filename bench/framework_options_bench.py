"""Faust options for the per-event overhead (issue 6), measured on the pass-through agent. Not a test.

    .venv/bin/python bench/framework_options_bench.py [--events 50000]

Same broker, same input (the streaming bench's user events), one pass-through worker per
configuration, each writing its own output topic:

* ``events``: the baseline (1b of the streaming bench): one ``Topic.send`` per event;
* ``take``: ``stream.take(500, within=0.05)`` batches, ``Topic.send`` per value;
* ``take-raw``: the same batches, values straight to the transport producer;
* ``confluent``: the baseline on Faust's confluent-kafka transport driver.

Reports events/s and the ratio to the baseline; writes bench/results/framework_options_bench.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import streaming_bench as sb  # noqa: E402

from processor.broker import EmbeddedBroker  # noqa: E402
from processor.contract.codec import encode_user_event  # noqa: E402

CONFIGS = {
    "events": {},
    "take": {"PASSTHROUGH_MODE": "take"},
    "take-raw": {"PASSTHROUGH_MODE": "take-raw"},
    "confluent": {"FAUST_DRIVER": "confluent"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="framework-bench-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    res: dict[str, object] = {"events": args.events, "configs": {}}
    try:
        bs = broker.bootstrap
        admin = AdminClient({"bootstrap.servers": bs})
        topics = [NewTopic("bench-in", 8, 1)] + [NewTopic(f"bench-out-{name}", 8, 1) for name in CONFIGS]
        for f in admin.create_topics(topics).values():
            f.result()
        events = sb.make_events(args.events, 7, 20_000)
        sb.produce(bs, "bench-in", [(f"{e.site_id}:{e.user_id}".encode(), encode_user_event(e)) for e in events])
        base = None
        for name, env in CONFIGS.items():
            try:
                eps, stats = sb.passthrough(bs, work, args.events, out_topic=f"bench-out-{name}", **env)
            except Exception as exc:  # noqa: BLE001 - an option that does not run is a result too
                res["configs"][name] = {"error": f"{type(exc).__name__}: {exc}"}  # type: ignore[index]
                print(f"{name:>10}: failed: {exc}", flush=True)
                continue
            base = base or eps
            res["configs"][name] = {"events_per_s": eps, "vs_events": round(eps / base, 2),  # type: ignore[index]
                                    "cpu_s": stats["cpu_s"], "rss_mb": stats["rss_mb"]}
            print(f"{name:>10}: {eps:>7} events/s  x{eps / base:.2f}  cpu {stats['cpu_s']:.1f} s", flush=True)
    finally:
        broker.stop()
    out = ROOT / "bench" / "results" / "framework_options_bench.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
