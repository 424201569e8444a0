"""What the handlers need from the world, as narrow interfaces (no Faust, no Kafka here).

The worker wires Kafka-backed implementations (processor/runtime/app.py); the handlers' unit
tests wire in-memory ones (tests/unit/handlers/fakes.py): a
:class:`processor.runtime.store.MemoryTableStore`, a recording outbox, a catalog that folds
entries as the catalog log would.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Protocol

if TYPE_CHECKING:
    from processor.catalog.registry import CatalogRegistry
    from processor.contract.models import Command, CommandResult, DeadLetter, MembershipChange, UserEvent
    from processor.metrics import Metrics


class InputRecord(Protocol):
    """One consumed message (Faust's ``Message`` has these attributes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Partition(Protocol):
    """One partition of the users table (processor/runtime/store.py): reads from its store;
    ``put``/``delete`` also write the changelog for a changelogged key space."""

    partition: int

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, start: bytes, stop: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) with ``start <= key < stop``, ascending, at most ``limit``."""

    def keys(self, start: bytes, stop: bytes, limit: int | None = None) -> Iterator[bytes]: ...

    async def write(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        """(key, value; None deletes) in one batch: atomically in the store, then the changelog."""

    async def put(self, key: bytes, value: bytes) -> None: ...

    async def delete(self, key: bytes) -> None: ...

    async def pop(self, key: bytes) -> None:
        """Delete ``key`` if it is there (no tombstone for a key never written)."""


class Table(Protocol):
    """The users table as this worker holds it."""

    def partition(self, partition: int) -> Partition: ...

    def owned_partitions(self) -> list[int]: ...


class Changes(Protocol):
    """The outbox as the handlers see it (processor/runtime/outbox.py, ``OutboxSink``)."""

    def emit(self, change: "MembershipChange", owner: bytes) -> None:
        """A new change; it leaves once the state write behind it is durable."""

    def queue(self, change: "MembershipChange", owner: bytes) -> None:
        """A recorded change again, byte-identical (a re-emission)."""

    def pending_for(self, owner: bytes) -> bool: ...

    async def settle(self, owner: bytes) -> None:
        """Return once ``owner``'s queued changes were released and acknowledged."""

    async def backpressure(self) -> None: ...


class CatalogView(Protocol):
    """The folded catalog log (processor/runtime/catalog_log.py)."""

    registry: "CatalogRegistry"

    async def wait_for(self, offset: int) -> None:
        """Return once the entry at ``offset`` (and every one before it) is folded."""

    async def catch_up(self) -> None:
        """Fold everything written to the log before this call."""


class Bus(Protocol):
    """The topics the handlers write besides the outbox and the table."""

    async def append_catalog(self, site_id: str, entry: bytes) -> int:
        """Append an encoded catalog entry; returns its offset once the broker acknowledged it."""

    async def append_catalog_later(self, site_id: str, entry: bytes) -> "Awaitable[int]":
        """Queue an encoded catalog entry without waiting for the broker; the returned awaitable
        gives its offset once acknowledged. The checkpoint makes it durable before the offsets
        of the messages handled so far are committed (Faust's producer, flushed at step 2)."""

    async def control(self, partition: int, key: bytes, body: bytes) -> None:
        """Queue a control message for one users partition."""

    async def result(self, site_id: str, value: bytes) -> None:
        """Queue an encoded command result."""


class Wire(Protocol):
    """The contract topics' wire format (processor/wire.py: schemaless Avro, or Schema
    Registry-framed). Decoding raises ``ContractError`` for a record that breaks the contract."""

    def decode_user_event(self, key: bytes | None, value: bytes | None) -> "UserEvent": ...

    def decode_command(self, value: bytes | None) -> "Command": ...

    def encode_command_result(self, res: "CommandResult") -> bytes: ...


# ``msg`` -> None when it can be read now, else why not (e.g. the Schema Registry does not answer):
# the guard then holds the message's partition until it can (nothing is dead-lettered or lost)
Readiness = Callable[[Any], Awaitable["str | None"]]


class DeadLetterSink(Protocol):
    """processor/runtime/dead_letters.py: a failed send pauses the message's partition."""

    def holds(self, msg: Any) -> bool: ...

    async def send(self, msg: Any, dl: "DeadLetter") -> bool:
        """True when sent; False when it failed and ``msg``'s partition is paused behind it."""

    def hold(self, msg: Any, ready: Callable[[], Awaitable["str | None"]], reason: str) -> None:
        """Pause ``msg``'s partition until ``ready()`` answers None, then read it again from ``msg``."""


def now_ms() -> int:
    return int(time.time() * 1000)


Clock = Callable[[], int]  # epoch milliseconds
Fault = Callable[[str, Any], None]  # (stage, command): raise an injected error (failure tests only)


class Stats:
    """Counters (shown by /readyz) and the Prometheus metrics the handlers move.

    Label children are cached: ``labels()`` takes a lock and builds a key on every call, and the
    per-event path moves a few of them per message."""

    def __init__(self, metrics: "Metrics | None" = None) -> None:
        self.counters: dict[str, int] = {}
        self.metrics = metrics
        self._children: dict[tuple[Any, ...], Any] = {}

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def event(self, event_type: str, status: str, seconds: float) -> None:
        self.count(f"user_events.{status}")
        m = self.metrics
        if m is not None:
            self._child(m.events, event_type, status).inc()
            m.evaluation.observe(seconds)

    def change(self, change: str, cause_kind: str) -> None:
        self.count(f"changes.{change}")
        if self.metrics is not None:
            self._child(self.metrics.changes, change, cause_kind).inc()

    def backfilled(self, users: int) -> None:
        self.count("backfill.users", users)
        if self.metrics is not None:
            self.metrics.backfill_users.inc(users)

    def timers_fired(self, n: int) -> None:
        self.count("timers.fired", n)
        if self.metrics is not None:
            self.metrics.timers.inc(n)

    def command(self, status: str, code: str | None) -> None:
        self.count(f"commands.{status}")
        if self.metrics is not None:
            self._child(self.metrics.commands, status, code or "").inc()

    def dead_letter(self, code: str) -> None:
        self.count(f"dead_letters.{code}")
        if self.metrics is not None:
            self._child(self.metrics.dead_letters, code).inc()
