"""The Kafka clients against the real broker: where the tools' and the output producer put each
key, and how the users changelog producer writes (order, acknowledged offsets, batches)."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processor.runtime.changelog import ChangelogProducer
from processor.runtime.clients import changelog_config
from processor.client import ContractProducer
from processor.runtime.output_producer import OutputProducer
from processor.rebuild import read_topic
from tests.support.harness import Cluster


def test_tools_put_each_key_on_the_partition_the_workers_use(cluster: Cluster) -> None:
    """The tools' producer (publish, rebuild) partitions keys exactly like the workers' clients
    (aiokafka's default, the Java client's murmur2): a rebuild's change for a user lands behind
    that user's live changes, and a published event reaches the worker that holds the user."""
    bs = cluster.settings.bootstrap_servers
    topic = f"partitioner-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(topic, 8, 1)]).values():
        f.result(30)
    keys = [f"site-{i % 3}:user-{i}".encode() for i in range(200)]
    prod = ContractProducer(bs)
    for k in keys:
        prod.raw(topic, k, b"x")
    prod.flush()
    seen = {key: p for p, _, key, _ in read_topic(bs, topic)}
    parts = list(range(8))
    want = {k: DefaultPartitioner()(k, parts, parts) for k in keys}
    assert seen == want
    assert len(set(want.values())) == 8  # the keys spread: the comparison is not vacuous


def _topic(bs: str, partitions: int) -> str:
    topic = f"client-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bs})  # referenced until the futures resolve
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)
    return topic


async def test_membership_changes_land_on_the_partition_the_workers_use(cluster: Cluster) -> None:
    """The output client (librdkafka) partitions a change's key like aiokafka and the Java client:
    every change of one user lands on one partition, so a consumer reads them in order."""
    bs = cluster.settings.bootstrap_servers
    topic = _topic(bs, 8)
    out = OutputProducer(bs, "test-changes")
    keys = [f"site-{i % 3}:user-{i}".encode() for i in range(200)]
    for k in keys:
        await out.send(topic, k, b"x")
    await out.flush()
    assert out.failed == 0
    seen = {key: p for p, _, key, _ in read_topic(bs, topic)}
    parts = list(range(8))
    assert seen == {k: DefaultPartitioner()(k, parts, parts) for k in keys}


async def test_changelog_records_are_acknowledged_in_order_one_batch_each(cluster: Cluster) -> None:
    """Table writes sent through the changelog producer with the tansu quirk: the acknowledged
    offset is the last record's, the records are stored in write order, and the partition's high
    watermark counts every record (tansu under-reports the end of a multi-record batch, which
    would stop Faust's table recovery early; each record is a batch of its own). A full client
    queue makes a put wait, never drop or reorder."""
    bs = cluster.settings.bootstrap_servers
    topic = _topic(bs, 2)
    # a client queue of 7 records: most puts find it full and flush first (a backfill's bound)
    log = ChangelogProducer(topic, {**changelog_config(bs, "test-changelog", records_per_batch=1),
                                    "queue.buffering.max.messages": 7})
    writes = [(b"U:s:u%d" % (i % 7), b"v%d" % i) for i in range(60)]
    for key, value in writes:
        await log.put(1, key, value)
    await log.flush()
    assert log.acked == {1: 59} and log.error is None
    assert [(k, v) for p, _, k, v in read_topic(bs, topic) if p == 1] == writes
    c = Consumer({"bootstrap.servers": bs, "group.id": f"hw-{uuid.uuid4().hex}"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=10) == (0, 60)
    finally:
        c.close()


async def test_clients_warm_up_against_the_broker_and_then_deliver(cluster: Cluster) -> None:
    """The worker warms both librdkafka clients at start (connection, metadata and, for the
    idempotent changelog client, its producer id: its first record waited ~500 ms without it).
    Against a live broker both report success, and records then go through."""
    bs = cluster.settings.bootstrap_servers
    table_topic, changes_topic = _topic(bs, 2), _topic(bs, 2)
    log = ChangelogProducer(table_topic, changelog_config(bs, "test-warm-changelog", records_per_batch=1))
    out = OutputProducer(bs, "test-warm-changes")
    assert await log.warm() is True
    assert await out.warm(changes_topic) is True
    await log.put(0, b"U:s:u1", b"state")
    await out.send(changes_topic, b"s:u1", b"change")
    await log.flush()
    await out.flush()
    assert log.acked == {0: 0} and out.failed == 0
    assert [(p, v) for p, _, _, v in read_topic(bs, table_topic)] == [(0, b"state")]
    assert [v for _, _, _, v in read_topic(bs, changes_topic)] == [b"change"]
