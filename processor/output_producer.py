"""The client that produces membership changes: its own Kafka producer, batching records.

Why a second client next to Faust's: with the ``tansu`` broker quirk the worker's Faust producer
puts one record in each batch. That producer writes the users table's changelog, and tansu's
ListOffsets(latest) under-reports the end of a multi-record batch, so table recovery would stop
early (docs/operations.md). Nothing reads the output topic by offset arithmetic, so its records
may share batches: one request then carries many records, and the outbox's sends in order no
longer wait a broker round trip each (with one record per batch, the client holds the next
record of a partition until the previous batch has left).

Same partitioner as Faust's transport (aiokafka's default: murmur2 of the key, as the Java
client), so every change of one user lands on one partition, in order. ``acks=all``: the outbox
counts a change as delivered only when :meth:`flush` returns.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("processor.output_producer")


class OutputProducer:
    """A lazily started ``AIOKafkaProducer`` with ``send`` / ``flush``.

    Not stopped explicitly: stopping it in ``on_before_shutdown`` cut the worker's shutdown short
    (no final commit, no LeaveGroup); the final commit's flush acknowledges every change instead."""

    def __init__(self, bootstrap_servers: str, client_id: str, linger_ms: int = 5) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.linger_ms = linger_ms
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def _client(self) -> Any:
        if self._producer is None:
            async with self._lock:
                if self._producer is None:
                    from aiokafka import AIOKafkaProducer

                    producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers,
                                                client_id=self.client_id, acks="all",
                                                linger_ms=self.linger_ms)
                    await producer.start()
                    self._producer = producer
        return self._producer

    async def send(self, topic: str, key: bytes, value: bytes) -> "asyncio.Future[Any]":
        """Queue one record; the returned future resolves when the broker acknowledged it."""
        client = await self._client()
        return await client.send(topic, value, key=key)

    async def flush(self) -> None:
        """Return once every record sent before this call is acknowledged (nothing to do if the
        client was never started)."""
        if self._producer is not None:
            await self._producer.flush()
