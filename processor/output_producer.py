"""The client that produces membership changes: a librdkafka producer (confluent-kafka), batching
records.

Why a second client next to Faust's: with the ``tansu`` broker quirk the worker's Faust producer
puts one record in each batch. That producer writes the users table's changelog, and tansu's
ListOffsets(latest) under-reports the end of a multi-record batch, so table recovery would stop
early (docs/operations.md). Nothing reads the output topic by offset arithmetic, so its records
may share batches: one request then carries many records, and the outbox's sends in order no
longer wait a broker round trip each.

Why librdkafka and not aiokafka (which this module used before): a worker emits ~5 changes per
user event, and aiokafka's ``send`` costs a Python future, a batch-builder append and a share of
its Python sender task per record, ~10% of the worker's CPU (py-spy, ``bench/streaming_bench.py``).
librdkafka's ``produce`` is one C call that queues the record; its own threads build batches and
talk to the broker. There is no future per record: the outbox only needs to know that *every*
record it sent is acknowledged, which is what :meth:`OutputProducer.flush` answers (it raises if
any record since the previous flush failed).

Same partitioner as Faust's transport (murmur2 of the key, as the Java client and aiokafka), so
every change of one user lands on one partition, in order; one request in flight per connection,
so a retried batch cannot overtake a later one of the same partition. ``acks=all``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from processor import librdkafka
from processor.librdkafka import KAFKA_LOG

log = logging.getLogger("processor.output_producer")


class OutputDeliveryError(RuntimeError):
    """A flush gave up: records were still unacknowledged after its timeout."""


def producer_config(bootstrap_servers: str, client_id: str, linger_ms: int) -> dict[str, Any]:
    """librdkafka settings for the output topic (see the module docstring for each choice)."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "acks": "all",
        "linger.ms": linger_ms,
        "partitioner": "murmur2_random",  # aiokafka's and the Java client's, not librdkafka's CRC32
        "max.in.flight.requests.per.connection": 1,  # keep a partition's records in send order on retries
        # A delivery report (a Python callback, taking the GIL on the flushing thread) only for a
        # failed record: the outbox needs the failures counted, not ~5 callbacks per user event.
        "delivery.report.only.error": True,
        "log.connection.close": False,
        "logger": KAFKA_LOG,
    }


class OutputProducer:
    """``send`` (queue one record, no await on the broker), ``flush`` (every record sent before has
    its delivery report) and ``failed`` (how many records the broker did not acknowledge).

    The client is created on first use. ``flush`` runs librdkafka's blocking flush on one
    dedicated thread, which also runs the delivery callbacks; they count failures. Not stopped explicitly: the worker's final commit flushes
    (an earlier aiokafka version cut the shutdown short when stopped in ``on_before_shutdown``)."""

    def __init__(self, bootstrap_servers: str, client_id: str, linger_ms: int = 5,
                 config: dict[str, Any] | None = None) -> None:
        """``config``: extra librdkafka settings (tests use it for short delivery timeouts)."""
        self._config = {**producer_config(bootstrap_servers, client_id, linger_ms), **(config or {}),
                        "on_delivery": self._on_delivery}
        self._producer: Any = None
        self._errors: list[str] = []
        self._errors_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.sent = 0  # records queued so far
        self.failed = 0  # records the broker did not acknowledge so far

    def _client(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer(self._config)
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="output-flush")
        return self._producer

    async def warm(self, topic: str, timeout: float = 10.0) -> bool:
        """Create the client and fetch ``topic``'s metadata before the first change is sent (the
        worker calls it at start). True when the broker answered; otherwise only logged."""
        client = self._client()
        return await librdkafka.warm(client, self._executor, topic, timeout, log, "output client")

    def _on_delivery(self, err: Any, msg: Any) -> None:
        """Runs on the flushing thread, for failed records only (``delivery.report.only.error``)."""
        if err is not None:
            with self._errors_lock:
                self.failed += 1
                self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
                del self._errors[:-10]

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Queue one record. Returns at once; a full local queue waits for the client to drain it."""
        client = self._client()
        while True:
            try:
                client.produce(topic, value, key)
                break
            except BufferError:  # librdkafka's local queue is full: let it send, then retry
                await self.flush()
        self.sent += 1

    def last_error(self) -> str:
        """The most recent delivery failure, for the error an operator reads ("" if none)."""
        with self._errors_lock:
            return self._errors[-1] if self._errors else ""

    async def flush(self) -> None:
        """Return once every record sent before this call is acknowledged or failed (failures are
        counted in :attr:`failed`: the outbox compares that count around its batch, so a failure
        is charged to the batch that sent the record, whichever flush observed it)."""
        if self._producer is None:
            return
        loop = asyncio.get_running_loop()
        left = await loop.run_in_executor(self._executor, self._producer.flush, 60.0)
        if left:
            raise OutputDeliveryError(f"{left} membership changes still unacknowledged after 60 s")
