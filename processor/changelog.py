"""The users table's changelog, produced by the processor itself through librdkafka.

Every write of the users table on the per-event path (a user's state, a timer, a fired-tick
entry) goes to the partition's RocksDB and, through :class:`ChangelogProducer`, to the table's
changelog topic, which Faust's recovery replays into a new owner's store. (A backfill's writes
go through :mod:`processor.changelog_writer` instead: on tansu it is faster there.) Why not
Faust's ``Table.__setitem__``: Faust sends each changelog record through its per-record path (a
FutureMessage, the producer buffer, aiokafka's accumulator and sender, and a callback that
writes the "persisted offset" to RocksDB for every record), ~16% of the worker's CPU per event
(py-spy, ``bench/streaming_bench.py``). Here a record is one C call (``produce``); the
delivery reports record the highest acknowledged offset per partition, which the worker writes
as Faust's persisted offset at each flush (``Processor._persist_offsets``).

Order: librdkafka keeps a partition's records in produce order, and the idempotent producer keeps
it across retries with several requests in flight, so a key's changelog records keep the order of
its writes (a key always maps to one partition).

``single_record_batches`` (the ``tansu`` broker quirk): tansu's ListOffsets(latest) under-reports
the end of a multi-record batch, so recovery would stop before the last records; each record is
then a batch of its own (``batch.num.messages=1``).

``warm`` creates the client and fetches the topic's metadata when the worker starts: an idempotent
librdkafka producer acquires its producer id in the background, and its first record otherwise
waited for that (~500 ms on tansu, measured), holding every change of the worker's first events.

``flush`` returns once every record put before the call is acknowledged: the outbox calls it
before releasing changes, and the commit hook before committing input offsets. A failed record
is fatal (``error`` is set, ``on_error`` runs on the event loop and every later ``put`` and
``flush`` raises): the local store then holds a write its changelog does not, and only a restart
with a replay repairs that.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from processor import librdkafka
from processor.librdkafka import KAFKA_LOG

log = logging.getLogger("processor.changelog")


class ChangelogError(RuntimeError):
    """A changelog record was not acknowledged; the worker must stop (see the module docstring)."""


def changelog_config(bootstrap_servers: str, client_id: str, single_record_batches: bool,
                     linger_ms: int = 0) -> dict[str, Any]:
    """librdkafka settings for the users changelog (see the module docstring for each choice)."""
    cfg: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "logger": KAFKA_LOG,  # librdkafka's log lines through Python logging (processor/librdkafka.py)
        "acks": "all",
        "linger.ms": linger_ms,
        # Idempotent: the broker de-duplicates retries and librdkafka keeps a partition's records in
        # order with up to 5 requests in flight (tansu supports it, transactions it does not). With
        # one request in flight and single-record batches (the tansu quirk), each round trip
        # carried one record per partition, and a 1M-user backfill waited on them.
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        # at most this many records wait in the client; a put beyond it flushes first (a long
        # backfill's memory stays bounded, as with the outbox's own high-water mark)
        "queue.buffering.max.messages": 20_000,
        "log.connection.close": False,
    }
    if single_record_batches:
        cfg["batch.num.messages"] = 1
    return cfg


class ChangelogProducer:
    """``put(partition, key, value | None)``, ``flush()``, ``acked`` (partition -> highest
    acknowledged offset), ``error`` / ``on_error``."""

    def __init__(self, topic: str, config: dict[str, Any]) -> None:
        self.topic = topic
        self._config = {**config, "on_delivery": self._on_delivery}
        self._producer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.acked: dict[int, int] = {}
        self.error: BaseException | None = None
        self.on_error: Callable[[BaseException], None] | None = None
        self.put_count = 0  # records handed to librdkafka
        self.delivered = 0  # records with a delivery report (acknowledged or failed)

    def _client(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            self._loop = asyncio.get_running_loop()
            self._producer = Producer(self._config)
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="changelog-flush")
        return self._producer

    async def warm(self, timeout: float = 10.0) -> bool:
        """Create the client and fetch the topic's metadata, so the first record does not wait
        for the connection and the producer id (see the module docstring). True when the broker
        answered; a broker that does not answer yet is only logged (the client keeps trying)."""
        client = self._client()
        return await librdkafka.warm(client, self._executor, self.topic, timeout, log,
                                     "users changelog client")

    def _on_delivery(self, err: Any, msg: Any) -> None:
        """Runs in ``poll`` once per record, on the event loop's thread or the flush's helper
        thread; both may poll at once, hence the lock around every count."""
        if err is not None:
            exc = ChangelogError(f"users changelog record of partition {msg.partition()} failed: {err}")
            with self._lock:
                self.delivered += 1
                first = self.error is None
                if first:
                    self.error = exc
            if first and self.on_error is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self.on_error, exc)
            return
        partition, offset = msg.partition(), msg.offset()
        with self._lock:
            self.delivered += 1
            if offset > self.acked.get(partition, -1):
                self.acked[partition] = offset

    def _check(self) -> None:
        if self.error is not None:
            raise ChangelogError(f"a users changelog record was not written: {self.error}")

    async def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue one record (``None``: a tombstone). Waits only while librdkafka's queue is full."""
        self._check()
        client = self._client()
        while True:
            try:
                client.produce(self.topic, value, key, partition=partition)
                break
            except BufferError:  # the client's queue is full (queue.buffering.max.messages)
                await self.flush()
        self.put_count += 1
        if not self.put_count & 63:
            # Serve the reports that arrived, on this thread: fewer GIL hand-offs than leaving them
            # all to the flush's helper thread. Not after every record: that cost 10-15%.
            client.poll(0)

    def _wait_delivered(self, target: int, timeout: float) -> bool:
        """On the helper thread: serve delivery reports until ``target`` records have one."""
        deadline = time.monotonic() + timeout
        poll = self._producer.poll
        while self.delivered < target and self.error is None:
            if time.monotonic() >= deadline:
                return False
            poll(0.05)  # returns as soon as a report was served
        return True

    async def flush(self, timeout: float = 60.0) -> None:
        """Return once every record put before this call is acknowledged (raises after a failure).

        A snapshot: records put while it waits (the worker goes on processing events) do not
        delay it, unlike librdkafka's own ``flush``, which waits for an empty queue. Reports that
        already arrived are served here, on the event loop's thread; the rest are awaited on a
        helper thread (a wait that polled from the loop every millisecond cost CPU with four
        workers on two cores)."""
        client = self._producer
        if client is not None and self.delivered < self.put_count:
            client.poll(0)
            if self.delivered < self.put_count:
                loop = asyncio.get_running_loop()
                done = await loop.run_in_executor(self._executor, self._wait_delivered, self.put_count, timeout)
                if not done and self.error is None:
                    raise ChangelogError(f"users changelog records still unacknowledged after {timeout:.0f} s")
        self._check()
