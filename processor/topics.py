"""Create the processor's topics with explicit partition counts (idempotent).

Co-partitioning is a correctness requirement: user events, the internal
control topic and the user table's changelog must have the same number of
partitions, or a backfill would scan the wrong users. Existing topics with a
different count are reported, never silently accepted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from processor.config import Settings
from processor.librdkafka import kafka_config

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36


class TopicLayoutError(RuntimeError):
    """An existing topic has the wrong partition count."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: tuple[tuple[str, str], ...] = ()
    strict: bool = True  # partition count must match exactly


def topic_specs(s: Settings) -> list[TopicSpec]:
    t, p = s.topics, s.partitions
    forever = (("retention.ms", "-1"),)
    return [
        TopicSpec(t.user_events, p),
        TopicSpec(t.control, p, forever),
        TopicSpec(s.changelog_topic, p, (("cleanup.policy", "compact"),)),
        TopicSpec(t.membership_changes, p, strict=False),
        TopicSpec(t.dead_letters, p, strict=False),
        TopicSpec(t.commands, s.command_partitions, strict=False),
        TopicSpec(t.command_results, s.command_partitions, strict=False),
        TopicSpec(t.catalog, 1, forever),
    ]


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient(kafka_config({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000}))


def ensure_topics(s: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics; verify counts of existing ones. Returns the names created."""
    admin = admin_client(s.bootstrap_servers)
    specs = topic_specs(s)
    futures = admin.create_topics(
        [NewTopic(sp.name, sp.partitions, s.replication_factor, config=dict(sp.config)) for sp in specs],
        request_timeout=timeout,
    )
    created: list[str] = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != TOPIC_ALREADY_EXISTS:
                # Some brokers reject unknown configs; retry without them.
                retry = admin.create_topics([NewTopic(name, _count(specs, name), s.replication_factor)])
                try:
                    retry[name].result(timeout=timeout)
                    created.append(name)
                except KafkaException as exc2:
                    if exc2.args[0].code() != TOPIC_ALREADY_EXISTS:
                        raise
    meta = admin.list_topics(timeout=timeout)
    for sp in specs:
        tm = meta.topics.get(sp.name)
        if tm is None:
            raise TopicLayoutError(f"topic {sp.name} was not created")
        have = len(tm.partitions)
        if sp.strict and have != sp.partitions:
            raise TopicLayoutError(
                f"topic {sp.name} has {have} partitions but {sp.partitions} are required "
                "(user events, control and changelog must be co-partitioned); "
                "set PARTITIONS to match or recreate the topic"
            )
    if created:
        log.info("created topics: %s", ", ".join(sorted(created)))
    return created


def _count(specs: list[TopicSpec], name: str) -> int:
    return next(sp.partitions for sp in specs if sp.name == name)
