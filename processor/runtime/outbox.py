"""Membership changes wait here until the state that records them is durable.

Why: a worker killed between emitting a change and getting its state write (the table's
changelog record) acknowledged leaves downstream with a change the recovered state does not
know about; the worker that replays the event then computes it again with another
``emitted_at`` (or, if the rules changed meanwhile, not at all). So changes are queued here and
released by the checkpoint (processor/runtime/checkpoint.py) only after the changelog holds
the state behind them:

    emitted  =>  the fact behind it is in the changelog  =>  recovery restores it
             =>  a replay re-emits it byte for byte (``REPLAYED``)

A user's changes must also leave before that user's state moves on (if e1 adds a member and e2
removes it while e1's ADDED still waits here, a crash could leave a state that only remembers
e2): every record names its *owner* (the state key), and :meth:`OutboxSink.settle` releases
until that owner has nothing pending. The handlers call it before touching such a user.

:class:`Outbox` is the queue alone (no I/O); :class:`OutboxSink` is what the handlers get.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from processor.contract.cloudevents import Headers
from processor.contract.codec import encode_membership_change
from processor.contract.models import MembershipChange

Record = tuple[bytes, bytes, "bytes | None", "Headers | None"]  # (key, value, owner, headers)


@dataclass(frozen=True, slots=True)
class DrainTiming:
    """One completed release, in seconds: ``oldest_wait`` runs from the first record's ``put``
    to the acknowledgement of the batch (what that change added to its end-to-end latency);
    ``queued`` from that ``put`` to the start of the release (waiting for an earlier one); then
    ``flush`` (state writes acknowledged), ``send`` and ``ack`` (the batch acknowledged)."""

    records: int
    oldest_wait: float
    queued: float
    flush: float
    send: float
    ack: float


@dataclass(slots=True)
class Batch:
    records: list[Record]
    first_put: float | None


class Outbox:
    """FIFO of (key, value, owner, headers) output records, taken in batches by the checkpoint."""

    def __init__(self, high_water: int = 20_000, clock: Callable[[], float] | None = None) -> None:
        import time

        self.high_water = high_water
        self.clock = clock or time.monotonic
        self._items: list[Record] = []
        self._first_put: float | None = None  # when the oldest pending record was put
        self._owners: Counter[bytes] = Counter()  # owner -> records queued or in flight
        self.on_put: Callable[[], None] | None = None  # wakes the checkpoint's release loop
        self.drained = 0  # records released so far
        self.drains = 0  # completed releases

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: bytes, value: bytes, owner: bytes | None = None,
            headers: Headers | None = None) -> None:
        if not self._items:
            self._first_put = self.clock()
        self._items.append((key, value, owner, headers))
        if owner is not None:
            self._owners[owner] += 1
        if self.on_put is not None:
            self.on_put()

    def pending_for(self, owner: bytes) -> bool:
        """Whether ``owner`` has a record that is not acknowledged yet (queued or in a batch)."""
        return owner in self._owners

    def full(self) -> bool:
        return len(self._items) >= self.high_water

    def take(self) -> Batch:
        """Everything queued now, in order (its owners stay pending until :meth:`done`)."""
        batch = Batch(self._items, self._first_put)
        self._items, self._first_put = [], None
        return batch

    def put_back(self, batch: Batch) -> None:
        """A batch that was not delivered goes back to the head, ahead of newer records."""
        self._items = batch.records + self._items
        if batch.first_put is not None:
            self._first_put = batch.first_put

    def done(self, batch: Batch) -> None:
        """The batch is acknowledged: its owners may move on."""
        owners = self._owners
        for _key, _value, owner, _headers in batch.records:
            if owner is not None:
                left = owners[owner] - 1
                if left:
                    owners[owner] = left
                else:
                    del owners[owner]
        self.drained += len(batch.records)
        self.drains += 1


class OutboxSink:
    """The handlers' outbox: queue changes (encoded for the output topic, keyed by site:user),
    settle an owner, apply backpressure. ``release`` is the checkpoint's; ``on_emit`` counts a
    new change (metrics, fault injection)."""

    def __init__(self, outbox: Outbox, release: Callable[[], Awaitable[Any]],
                 on_emit: Callable[[MembershipChange], None] | None = None,
                 encode: Callable[[MembershipChange], bytes] = encode_membership_change,
                 headers: Callable[[MembershipChange], Headers] | None = None) -> None:
        """``encode``: the output topic's wire format (processor/wire.py; default schemaless);
        ``headers``: the record headers of a change (the CloudEvents attributes,
        processor/contract/cloudevents.py; None: no headers)."""
        self.outbox = outbox
        self._encode = encode
        self._headers = headers
        self._release = release
        self._on_emit = on_emit

    def emit(self, change: MembershipChange, owner: bytes) -> None:
        """A new change (it leaves once the state write behind it is durable)."""
        if self._on_emit is not None:
            self._on_emit(change)
        self.queue(change, owner)

    def queue(self, change: MembershipChange, owner: bytes) -> None:
        """A change again, byte-identical, headers included (a re-emission after a crash)."""
        self.outbox.put(f"{change.site_id}:{change.user_id}".encode(), self._encode(change), owner,
                        self._headers(change) if self._headers is not None else None)

    def pending_for(self, owner: bytes) -> bool:
        return self.outbox.pending_for(owner)

    async def settle(self, owner: bytes) -> None:
        """Return once every change of ``owner`` was released and acknowledged."""
        while self.outbox.pending_for(owner):
            await self._release()

    async def backpressure(self) -> None:
        """Release inline when too much is pending (a big backfill must not grow memory unbounded)."""
        if self.outbox.full():
            await self._release()
