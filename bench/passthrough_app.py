"""Baseline for the streaming bench: a Faust agent that consumes one message and produces one,
with no logic, on the same broker settings as the processor (per-event framework cost).

``PASSTHROUGH_MODE`` picks how (bench/framework_options_bench.py compares them):

* ``events`` (default, the baseline): ``async for event in stream.events()``, ``Topic.send`` each;
* ``take``: ``stream.take(500, within=0.05)`` batches, ``Topic.send`` each value;
* ``take-raw``: the same batches, each value straight to the transport producer (as the
  processor's outbox sends);

``FAUST_DRIVER=confluent`` runs it on Faust's confluent-kafka transport instead of aiokafka.
"""

from __future__ import annotations

import os

import faust

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
app = faust.App(
    os.environ.get("APP_ID", "bench-passthrough"),
    broker=f"{os.environ.get('FAUST_DRIVER', 'kafka')}://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    web_port=int(os.environ.get("WEB_PORT", "6099")),
    datadir=os.environ.get("STATE_DIR", "/tmp/passthrough"),
    topic_allow_declare=False, topic_disable_leader=True,
    consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
    broker_session_timeout=6, broker_heartbeat_interval=1, broker_request_timeout=30,
    producer_acks=-1,
)
src = app.topic(os.environ.get("IN_TOPIC", "bench-in"), **RAW)
dst = app.topic(os.environ.get("OUT_TOPIC", "bench-out"), **RAW)


MODE = os.environ.get("PASSTHROUGH_MODE", "events")


@app.agent(src)
async def passthrough(stream):  # type: ignore[no-untyped-def]
    if MODE == "events":
        async for event in stream.events():
            await dst.send(key=event.message.key, value=event.message.value)
    elif MODE == "take":
        async for values in stream.take(500, within=0.05):
            for v in values:
                await dst.send(value=v)
    elif MODE == "take-raw":
        async for values in stream.take(500, within=0.05):
            for v in values:
                await app.producer.send(dst.get_topic_name(), None, v, partition=None, timestamp=None,
                                        headers=None)
    else:
        raise SystemExit(f"unknown PASSTHROUGH_MODE {MODE!r}")


if __name__ == "__main__":
    worker = faust.Worker(app, loglevel="warn")
    worker.spinner = None  # as processor/worker.py: no root DEBUG level for a terminal spinner
    worker.execute_from_commandline()
