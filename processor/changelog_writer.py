"""The users table's changelog records of a backfill, sent in the background in write order per
partition, through Faust's producer (aiokafka).

Used for backfills only (``Processor.bulk_writes``); the per-event path uses
:class:`processor.changelog.ChangelogProducer` (librdkafka). Why two: with single-record batches
(the tansu quirk) librdkafka carries one record per partition per request, which held a
1M-user backfill at ~22k users/s (0.23 of the bare scan) against ~30k users/s (0.31) through this
writer, measured back to back; on the per-event path librdkafka cut the worker's CPU per event
by ~23%. The two never interleave: ``bulk_writes`` flushes the per-event client before the
backfill's first record and this writer after its last, so every key's changelog records keep
the order of its writes. (Before both: Faust's ``Table.__setitem__``, whose producer buffer
filled up in a 1M-user backfill and held it at 0.15 of the bare scan.)

Why a queue per partition and not ``await producer.send`` in the agent: with single-record
batches (the tansu workaround) the Kafka client lets the next record of a partition wait until
the previous batch has left, so an inline send would hold the agent for a broker round trip
per write. Here the agent only appends; one pump per partition sends that partition's records
in order (a key always maps to one partition, so a key's records keep their order), and the
partitions' pumps overlap.

``flush`` returns once every record put before the call is acknowledged by the broker: the
outbox calls it before releasing changes, and the commit hook before committing input offsets.
A failed record is fatal (``error`` is set and every later ``flush`` raises): the local store
then holds a write its changelog does not, and only a restart with a replay repairs that.

No faust or Kafka import (processor.changelog, for the shared error, imports librdkafka only
when it creates its client): ``send`` is injected, and the unit tests drive this with fakes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable

from processor.runtime.exceptions import ChangelogError  # one error for both changelog clients

# send(partition, key, value | None) -> awaitable resolving to a future of the record's offset
Send = Callable[[int, bytes, "bytes | None"], Awaitable["asyncio.Future[Any]"]]


class ChangelogWriter:
    """Ordered per-partition queues of changelog records with background pumps."""

    def __init__(self, send: Send, high_water: int = 20_000) -> None:
        self._send = send
        self.high_water = high_water
        self._queues: dict[int, deque[tuple[bytes, bytes | None]]] = {}
        self._pumps: dict[int, asyncio.Task[None]] = {}
        self._inflight: set[asyncio.Future[Any]] = set()
        self._queued = 0
        self._put_seq: dict[int, int] = {}  # partition -> records put so far
        self._sent_seq: dict[int, int] = {}  # partition -> records handed to the client so far
        self._progress = asyncio.Event()  # set whenever a record is handed over
        self._ebb = asyncio.Event()
        self.acked: dict[int, int] = {}  # partition -> highest acknowledged offset
        self.error: BaseException | None = None
        self.on_error: Callable[[BaseException], None] | None = None

    def __len__(self) -> int:
        """Records not yet handed to the client."""
        return self._queued

    async def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue one record (``None``: a tombstone); waits only while too much is queued."""
        self._check()
        q = self._queues.get(partition)
        if q is None:
            q = self._queues[partition] = deque()
        q.append((key, value))
        self._queued += 1
        self._put_seq[partition] = self._put_seq.get(partition, 0) + 1
        pump = self._pumps.get(partition)
        if pump is None or pump.done():
            self._pumps[partition] = asyncio.ensure_future(self._pump(partition, q))
        while self._queued >= self.high_water and self.error is None:
            self._ebb.clear()
            await self._ebb.wait()

    async def _pump(self, partition: int, q: deque[tuple[bytes, bytes | None]]) -> None:
        while q:
            key, value = q[0]
            try:
                fut = await self._send(partition, key, value)
            except Exception as exc:  # noqa: BLE001 - recorded and re-raised by flush
                self._fail(exc)
                return
            q.popleft()
            self._queued -= 1
            self._sent_seq[partition] = self._sent_seq.get(partition, 0) + 1
            self._progress.set()
            if self._queued < self.high_water:
                self._ebb.set()
            self._inflight.add(fut)
            fut.add_done_callback(lambda f, p=partition: self._acked(p, f))

    def _acked(self, partition: int, fut: asyncio.Future[Any]) -> None:
        self._inflight.discard(fut)
        if fut.cancelled():
            self._fail(ChangelogError(f"changelog record of partition {partition} cancelled"))
            return
        exc = fut.exception()
        if exc is not None:
            self._fail(exc)
            return
        offset = fut.result().offset
        if offset > self.acked.get(partition, -1):
            self.acked[partition] = offset

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            self._ebb.set()
            self._progress.set()
            if self.on_error is not None:
                self.on_error(exc)

    def _check(self) -> None:
        if self.error is not None:
            raise ChangelogError(f"a users changelog record was not written: {self.error!r}")

    async def flush(self) -> None:
        """Return once every record put before this call is acknowledged (raises after a failure)."""
        targets = dict(self._put_seq)  # a snapshot: records put later do not delay this flush

        def behind() -> bool:
            return any(self._sent_seq.get(p, 0) < n for p, n in targets.items())

        while behind() and self.error is None:
            self._progress.clear()
            await self._progress.wait()
        inflight = list(self._inflight)
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)
        self._check()
