"""Membership changes wait here until the state that records them is durable.

Why: a worker killed between emitting a change and getting its state write
(the table's changelog record) acknowledged leaves downstream with a change the
recovered state does not know about. The worker that replays the event then
computes the change again with a different ``emitted_at`` (or, if the rules
changed meanwhile, not at all, and never removes the member). Holding changes
back until the changelog is flushed closes that window:

    emitted  =>  the fact behind it is in the changelog  =>  recovery restores it
             =>  a replay re-emits it byte for byte (``REPLAYED``)

``drain`` takes the pending batch, flushes the producer (every changelog
record written before the batch was taken is then acknowledged), only then
hands the batch to ``send``, in the order the changes were made, and flushes
again so the batch itself is acknowledged before its owners count as settled. It runs in a
background loop (woken by ``put``) for latency, and before every offset commit
(processor.faust_fixes installs the hook) so an offset is never committed while
a change of an event before it is still waiting here.

A user's changes must also leave before that user's state moves on: if event e1
adds a member and e2 (same user) removes it while e1's ADDED is still waiting,
a crash would leave a state that only remembers e2, and a replay could re-emit
the REMOVED without the ADDED. So every record names its *owner* (the state
key), and ``settle(owner)`` drains until that owner has nothing pending; the
processor calls it before touching a user whose changes are still here.

Every completed drain reports a :class:`DrainTiming` to ``on_drain`` (the worker turns it into
Prometheus histograms): how long the oldest record waited, and how that splits into the wait
for the state flush, the sends and the acknowledgement. That is the outbox's share of a
change's end-to-end latency, which an operator otherwise cannot see.

No faust or Kafka import: ``flush`` and ``send`` are injected, and the unit
tests drive this class with recording fakes (and ``clock``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

Flush = Callable[[], Awaitable[None]]
Send = Callable[[bytes, bytes], Awaitable[None]]

log = logging.getLogger("processor.outbox")


@dataclass(frozen=True, slots=True)
class DrainTiming:
    """One completed drain, in seconds: ``oldest_wait`` runs from the first record's ``put`` to
    the acknowledgement of the batch (what that change added to its end-to-end latency);
    ``queued`` from that ``put`` to the start of the drain (waiting for an earlier drain);
    then ``flush`` (state writes acknowledged), ``send`` and ``ack`` (the batch acknowledged)."""

    records: int
    oldest_wait: float
    queued: float
    flush: float
    send: float
    ack: float


class OutboxSendError(RuntimeError):
    """A record of the batch was not acknowledged; the batch is queued again (at-least-once)."""


class Outbox:
    """FIFO of (key, value) output records released only after a durability flush."""

    def __init__(self, flush: Flush, send: Send, high_water: int = 20_000,
                 on_drain: Callable[[DrainTiming], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 failures: Callable[[], int] | None = None,
                 failure_detail: Callable[[], str] | None = None) -> None:
        """``failures``: a running count of records the sender's client gave up on (``send`` only
        queues a record; the client reports failures later, not through the flush); a batch during
        which it grows is not delivered. ``failure_detail``: the client's last error, for the
        message."""
        self._flush = flush
        self._failures = failures
        self._failure_detail = failure_detail
        self._send = send
        self.high_water = high_water
        self.on_drain = on_drain
        self._clock = clock
        self._items: list[tuple[bytes, bytes, bytes | None]] = []
        self._first_put: float | None = None  # when the oldest pending record was put
        self._owners: Counter[bytes] = Counter()  # owner -> records queued or in flight
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.drained = 0  # records handed to ``send`` so far
        self.drains = 0  # completed drains (each one flush)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: bytes, value: bytes, owner: bytes | None = None) -> None:
        """Queue one record; the background loop picks it up."""
        if not self._items:
            self._first_put = self._clock()
        self._items.append((key, value, owner))
        if owner is not None:
            self._owners[owner] += 1
        self._wake.set()

    def pending_for(self, owner: bytes) -> bool:
        """Whether ``owner`` has a record that is not acknowledged yet."""
        return owner in self._owners

    async def settle(self, owner: bytes) -> None:
        """Return once every record of ``owner`` was flushed-then-sent-and-acknowledged."""
        while owner in self._owners:
            await self.drain()

    async def backpressure(self) -> None:
        """Drain inline when too much is pending (a big backfill must not grow memory unbounded)."""
        if len(self._items) >= self.high_water:
            await self.drain()

    async def drain(self) -> int:
        """Flush, send everything that was pending when the drain started, flush again (the sends
        are acknowledged); return the count.

        On a failure the batch goes back to the head of the queue (order kept; records already
        sent may go out twice, byte for byte: at-least-once) and the error propagates: a failed
        pre-commit drain must stop the commit.
        """
        async with self._lock:
            if not self._items:
                return 0
            batch, self._items = self._items, []
            first_put, self._first_put = self._first_put, None
            clock = self._clock
            t0 = clock()
            try:
                await self._flush()
                t1 = clock()
                # every record sent before this batch has its delivery report now (the flush above),
                # so failures counted from here on are this batch's
                failed_before = self._failures() if self._failures is not None else 0
                for key, value, _owner in batch:
                    await self._send(key, value)
                t2 = clock()
                await self._flush()  # acknowledged: only now may an owner's state move on
                t3 = clock()
                if self._failures is not None and self._failures() > failed_before:
                    detail = self._failure_detail() if self._failure_detail is not None else ""
                    raise OutboxSendError(f"{self._failures() - failed_before} membership change(s) of a batch "
                                          f"of {len(batch)} not delivered: {detail}")
            except BaseException:
                self._items = batch + self._items
                if first_put is not None:
                    self._first_put = first_put
                raise
            for _key, _value, owner in batch:
                if owner is not None:
                    left = self._owners[owner] - 1
                    if left:
                        self._owners[owner] = left
                    else:
                        del self._owners[owner]
            self.drained += len(batch)
            self.drains += 1
            if self.on_drain is not None:
                start = t0 if first_put is None else first_put
                self.on_drain(DrainTiming(len(batch), t3 - start, t0 - start, t1 - t0, t2 - t1, t3 - t2))
            return len(batch)

    async def run(self, retry_delay: float = 0.5) -> None:
        """Background loop: drain whenever something was put. Errors are logged and retried."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the loop alive; the pre-commit drain also retries
                log.exception("outbox drain failed; %d records kept, retrying", len(self._items))
                await asyncio.sleep(retry_delay)
                self._wake.set()
