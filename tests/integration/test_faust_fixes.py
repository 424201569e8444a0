"""The fetch race behind the lost records after a restart (processor/runtime/faust_compat.py, fetch-frozen-partitions).

Faust hands the consumer thread its live set of active partitions for a fetch that may wait up to
a second; recovery's end empties that set while the fetch waits, and aiokafka reads an empty set
as "every partition". The first test reproduces the mechanism deterministically on the real broker
with aiokafka alone; the second checks that the patched Faust fetch asks for a frozen copy; the
soak test restarts a wiped worker many times and loses nothing.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.harness import Cluster, fold_membership, make_command, make_event

from .conftest import warm_up


def _topic(bootstrap: str, partitions: int = 2) -> str:
    name = f"fetch-race-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def _produce(bootstrap: str, topic: str, partition: int, value: bytes) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, value, partition=partition)
    assert p.flush(10) == 0


async def _drained_while_waiting(bootstrap: str, snapshot: bool) -> dict[int, list[bytes]]:
    """Wait for records of partition 0 only; while waiting, 'pause' it by emptying the set the
    wait was given (as Faust does at the end of recovery), then let partition 1 get a record."""
    topic = _topic(bootstrap)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        consumer.assign([tp0, tp1])
        await consumer.seek_to_beginning(tp0, tp1)
        active = {tp0}
        asked = frozenset(active) if snapshot else active
        wait = asyncio.ensure_future(consumer._fetcher.fetched_records(asked, timeout=3.0))
        await asyncio.sleep(0.5)  # the fetch is waiting: partition 0 has nothing
        active.clear()  # Faust's pause_partitions: difference_update on the same set object
        await asyncio.get_running_loop().run_in_executor(None, _produce, bootstrap, topic, 1, b"stream-record")
        got = await wait
        return {tp.partition: [r.value for r in records] for tp, records in got.items()}
    finally:
        await consumer.stop()


def test_a_fetch_given_a_live_set_drains_partitions_it_did_not_ask_for(cluster: Cluster) -> None:
    """With the live set (Faust's behaviour, unpatched) the waiting fetch returns partition 1's
    record, which Faust would then drop; with a frozen copy (the fix) it does not."""
    bootstrap = cluster.settings.bootstrap_servers
    live = asyncio.run(_drained_while_waiting(bootstrap, snapshot=False))
    assert live == {1: [b"stream-record"]}
    frozen = asyncio.run(_drained_while_waiting(bootstrap, snapshot=True))
    assert frozen == {}


def test_patched_faust_fetch_asks_for_a_frozen_copy() -> None:
    """The worker's Faust fetch (after faust_compat.apply) passes the consumer thread a copy of the
    active set taken at request time, and never an empty set."""
    from processor.runtime import faust_compat

    faust_compat.apply()
    import faust.transport.drivers.aiokafka as driver

    seen: list[object] = []

    class Thread:  # the two members of Faust's consumer thread the fetch uses
        def _ensure_consumer(self) -> object:
            return type("C", (), {"_max_poll_records": 10})()

        async def call_thread(self, fn: object, consumer: object, partitions: object, **kw: object) -> dict:
            seen.append(partitions)
            return {}

        _fetch_records = None

    live = {TopicPartition("t", 0)}
    asyncio.run(driver.AIOKafkaConsumerThread.getmany(Thread(), live, 1.0))  # type: ignore[arg-type]
    live.clear()
    assert seen == [frozenset({TopicPartition("t", 0)})] and seen[0] is not live
    asyncio.run(driver.AIOKafkaConsumerThread.getmany(Thread(), set(), 1.0))  # type: ignore[arg-type]
    assert len(seen) == 1, "an empty active set must not fetch (aiokafka reads it as every partition)"


@pytest.mark.soak
def test_wiped_restarts_lose_nothing(tmp_path: Path) -> None:
    """15 rounds of: a site with a rule and 50 users, then a restart with a wiped state dir. Each
    time every partition's warm-up marker is processed (before the fix the repro of this loop lost
    markers within 1-5 rounds on this machine, under load)."""
    c = Cluster(tmp_path, app_id="sa-fetch-race")
    try:
        c.start_worker("r0")
        warm_up(c)
        for n in range(15):
            site = f"race-{n}"
            cmds = [make_command(site, "UpsertSegment", segment_id="s", name="S"),
                    make_command(site, "EnableSegmentAutomation", segment_id="s"),
                    make_command(site, "CreateRule", rule_id="r", segment_id="s", name="r",
                                 condition={"field": "department", "op": "equals", "value": "Sales"})]
            for cmd in cmds:
                c.producer.command(cmd)
            c.producer.flush()
            c.wait_results([x.command_id for x in cmds])
            for i in range(50):
                c.producer.user_event(make_event(site, f"u{i}", department="Sales" if i % 2 == 0 else "HR"))
            c.producer.flush()
            want = {f"u{i}" for i in range(0, 50, 2)}
            c.wait(lambda: fold_membership(c.changes_for(site)).get((site, "s")) == want, what=site)
            old = c.workers.pop()
            old.stop()
            shutil.rmtree(old.state_dir, ignore_errors=True)
            c.start_worker(old.name)
            warm_up(c, timeout=60)
    finally:
        c.close()
