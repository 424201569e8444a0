"""Edge: small confluent-kafka helpers for tools, the dev runner and tests.

Producers key every message as the contract says; the tail helper reads a
topic from the beginning with a group-less consumer. Both connect with the settings'
TLS/SASL (processor/kafka_security.py); values go through the settings' wire format
(schemaless, or Schema Registry-framed: processor/wire.py).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

from confluent_kafka import KafkaError, TopicPartition

from processor.config import KafkaSecurity, Topics
from processor.contract.codec import user_event_key
from processor.contract.models import Command, UserEvent
from processor.errors import ProcessorError
from processor.runtime import clients
from processor.wire import SCHEMALESS, WireFormat

if TYPE_CHECKING:
    from processor.config import Settings

T = TypeVar("T")


class ContractProducer:
    """Produce contract messages (Avro values, UTF-8 keys)."""

    def __init__(self, bootstrap: str, topics: Topics | None = None, linger_ms: int = 5,
                 security: KafkaSecurity | None = None, wire: WireFormat | None = None,
                 records_per_batch: int | None = None) -> None:
        """``linger_ms``: how long a record may wait for others to share its batch. A bulk writer
        (the rebuild) wants more: at 16k records/s, 5 ms makes batches of a few records and the
        broker spends several times more CPU per record (docs/performance.md, "Rebuild")."""
        self.topics = topics or Topics()
        self.wire = wire or SCHEMALESS
        # The Java client's partitioner, which the workers (aiokafka) use too: librdkafka's default
        # (CRC32) would put a user's records on another partition than the workers'.
        self.p = clients.new_producer(clients.contract_producer_config(bootstrap, linger_ms, records_per_batch),
                                      security)
        self._unpolled = 0
        self.queue_full_waits = 0  # times a produce waited for room in the local queue

    @classmethod
    def from_settings(cls, s: "Settings", linger_ms: int = 5,
                      records_per_batch: int | None = None) -> "ContractProducer":
        """The settings' Kafka (bootstrap, TLS/SASL), topics and wire format."""
        return cls(s.bootstrap_servers, s.topics, linger_ms, s.kafka_security, WireFormat.from_settings(s),
                   records_per_batch)

    def user_event(self, ev: UserEvent) -> None:
        self.raw(self.topics.user_events, user_event_key(ev.site_id, ev.user_id), self.wire.encode_user_event(ev))

    def command(self, cmd: Command, key: str | None = None) -> None:
        self.raw(self.topics.commands, (key if key is not None else cmd.site_id).encode(),
                 self.wire.encode_command(cmd))

    def raw(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
            headers: list[tuple[str, bytes]] | None = None) -> None:
        while True:
            try:
                if partition is None:
                    self.p.produce(topic, key=key, value=value, headers=headers)
                else:
                    self.p.produce(topic, key=key, value=value, partition=partition, headers=headers)
                break
            except BufferError:  # the local queue is full: let the client send, then retry
                self.queue_full_waits += 1
                self.p.poll(0.01)
        self._unpolled += 1
        if self._unpolled >= 1000:  # serve the client's events now and then, not per record (a rebuild's hot loop)
            self._unpolled = 0
            self.p.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        left = self.p.flush(timeout)
        if left:
            raise ProcessorError("NOT_DELIVERED", f"{left} messages not delivered within {timeout}s")

    def close(self, timeout: float = 5.0) -> None:
        """Send what is still queued (for at most ``timeout`` seconds; the rest is dropped), then
        close the client's connections (a broker stopping next would wait for them)."""
        if self.p.flush(timeout):
            self.p.purge()
        self.p.close()


def new_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


class TopicReader:
    """Read a topic from the beginning, across all partitions, without a consumer group."""

    def __init__(self, bootstrap: str, topic: str, security: KafkaSecurity | None = None) -> None:
        self.c = clients.new_consumer(clients.reader_config(bootstrap, f"reader-{uuid.uuid4().hex}"), security)
        meta = self.c.list_topics(topic, timeout=10)
        parts = meta.topics[topic].partitions
        self.c.assign([TopicPartition(topic, p, 0) for p in parts])

    @classmethod
    def from_settings(cls, s: "Settings", topic: str) -> "TopicReader":
        return cls(s.bootstrap_servers, topic, s.kafka_security)

    def poll_batch(self, timeout: float = 0.2, max_messages: int = 1000) -> list[tuple[bytes | None, bytes | None]]:
        out = []
        for msg in self.c.consume(max_messages, timeout):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise ProcessorError("READ_FAILED", str(msg.error()), f"$topic.{msg.topic()}[{msg.partition()}]")
            out.append((msg.key(), msg.value()))
        return out

    def stream(self, decode: Callable[[bytes], T], idle_timeout: float | None = None) -> Iterator[T]:
        last = time.monotonic()
        while idle_timeout is None or time.monotonic() - last < idle_timeout:
            batch = self.poll_batch()
            if batch:
                last = time.monotonic()
            for _, v in batch:
                if v is not None:
                    yield decode(v)

    def close(self) -> None:
        self.c.close()
