"""The users table's changelog, produced by the worker itself through librdkafka.

Every changelogged write of the table (processor/runtime/store.py) goes to the partition's
RocksDB and, through :class:`ChangelogProducer`, to the table's changelog topic, which Faust's
recovery replays into a new owner's store. Not Faust's ``Table.__setitem__``: its per-record path
(a future, the producer buffer, a callback writing the persisted offset per record) cost a large
share of the worker's CPU (docs/performance.md); here a record is one C call, and the delivery
reports keep the highest acknowledged offset per partition (``acked``), which the checkpoint
records as Faust's persisted offset.

Order: librdkafka keeps a partition's records in produce order, and the idempotent producer keeps
it across retries with several requests in flight, so a key's records keep the order of its
writes (a key always maps to one partition).

``flush`` returns once every record put before the call is acknowledged (a snapshot, counted per
partition: reports come in produce order within a partition, in no order across partitions). A failed
record is fatal: ``error`` is set, ``on_error`` runs on the event loop and every later ``put``
and ``flush`` raises, because the local store now holds a write its changelog does not.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from processor.runtime import clients
from processor.runtime.exceptions import ChangelogError

log = logging.getLogger("processor.changelog")


class ChangelogProducer:
    """``put(partition, key, value | None)``, ``flush()``, ``acked`` (partition -> highest
    acknowledged offset), ``error`` / ``on_error``."""

    def __init__(self, topic: str, config: dict[str, Any], security: Any = None) -> None:
        """``security``: the settings' KafkaSecurity (TLS/SASL; None: plaintext)."""
        self.topic = topic
        self._security = security
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
        self._put_by: dict[int, int] = {}  # partition -> records handed to librdkafka
        self._reported_by: dict[int, int] = {}  # partition -> records with a delivery report

    def _client(self) -> Any:
        if self._producer is None:
            self._loop = asyncio.get_running_loop()
            self._producer = clients.new_producer(self._config, self._security)
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="changelog-flush")
        return self._producer

    async def warm(self, timeout: float = 10.0) -> bool:
        """Create the client and fetch the topic's metadata, so the first record does not wait
        for the connection and the producer id (see the module docstring). True when the broker
        answered; a broker that does not answer yet is only logged (the client keeps trying)."""
        client = self._client()
        return await clients.warm(client, self._executor, self.topic, timeout, log, "users changelog client")

    def _on_delivery(self, err: Any, msg: Any) -> None:
        """Runs in ``poll`` once per record, on the event loop's thread or the flush's helper
        thread; both may poll at once, hence the lock around every count."""
        if err is not None:
            exc = ChangelogError(f"users changelog record of partition {msg.partition()} failed: {err}",
                                 self.topic, msg.partition())
            with self._lock:
                self.delivered += 1
                self._reported_by[msg.partition()] = self._reported_by.get(msg.partition(), 0) + 1
                first = self.error is None
                if first:
                    self.error = exc
            if first and self.on_error is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self.on_error, exc)
            return
        partition, offset = msg.partition(), msg.offset()
        with self._lock:
            self.delivered += 1
            self._reported_by[partition] = self._reported_by.get(partition, 0) + 1
            if offset > self.acked.get(partition, -1):
                self.acked[partition] = offset

    def _check(self) -> None:
        if self.error is not None:
            raise ChangelogError(f"a users changelog record was not written: {self.error.message}"
                                 if isinstance(self.error, ChangelogError) else
                                 f"a users changelog record was not written: {self.error}", self.topic)

    async def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue one record (``None``: a tombstone). Waits only while librdkafka's queue is full."""
        self._check()
        client = self._client()
        while True:
            try:
                client.produce(self.topic, value, key, partition=partition)
                break
            except BufferError:  # the client's queue is full: wait for room, not for a flush
                await self._wait_for_room(client)
        self.put_count += 1
        self._put_by[partition] = self._put_by.get(partition, 0) + 1
        if not self.put_count & 63:
            # Serve the reports that arrived, on this thread: fewer GIL hand-offs than leaving them
            # all to the flush's helper thread; not after every record (docs/performance.md).
            client.poll(0)

    async def _wait_for_room(self, client: Any) -> None:
        """Serve delivery reports on the helper thread until the client's queue has room."""
        target = self.delivered + 1
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._wait_delivered, target, 60.0)
        self._check()

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
        delay it, unlike librdkafka's own ``flush``, which waits for an empty queue. Counted per
        partition: a record put later on another partition can be acknowledged first (with one
        record per batch, a partition's backlog goes out one request at a time), so a total of
        reports would let this return before the snapshot's last records of a busy partition.
        Reports that already arrived are served here, on the event loop's thread; the rest are
        awaited on a helper thread (a wait that polled from the loop every millisecond cost CPU
        with four workers on two cores)."""
        client = self._producer
        if client is not None and self.delivered < self.put_count:
            target = {p: n for p, n in self._put_by.items() if self._reported_by.get(p, 0) < n}
            client.flush(0)  # send what lingers now (librdkafka ignores linger.ms while flushing)
            if not self._reported(target):
                loop = asyncio.get_running_loop()
                done = await loop.run_in_executor(self._executor, self._wait_reported, target, timeout)
                if not done and self.error is None:
                    raise ChangelogError(f"users changelog records still unacknowledged after {timeout:.0f} s",
                                         self.topic)
        self._check()

    def _reported(self, target: dict[int, int]) -> bool:
        """Whether each partition of ``target`` has a report for its first ``target[p]`` records."""
        reported = self._reported_by
        return all(reported.get(p, 0) >= n for p, n in target.items())

    def _wait_reported(self, target: dict[int, int], timeout: float) -> bool:
        """On the helper thread: serve delivery reports until ``target`` is reported (see flush)."""
        deadline = time.monotonic() + timeout
        poll = self._producer.poll
        while not self._reported(target) and self.error is None:
            if time.monotonic() >= deadline:
                return False
            poll(0.05)  # returns as soon as a report was served
        return True
