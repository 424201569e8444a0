"""processor/client.py against the real broker: where the tools' producer puts each key."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka.admin import AdminClient, NewTopic

from processor.client import ContractProducer
from processor.rebuild import read_topic
from processor.testing import Cluster


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
