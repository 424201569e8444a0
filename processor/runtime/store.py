"""The users table: one interface over each partition's RocksDB store, with each key space's
durability declared.

Key spaces (processor/state/keys.py) and what survives the loss of a worker's disk:

====== ================================ ============== ==========================================
prefix holds                            durability     on restore from the changelog
====== ================================ ============== ==========================================
``U``  a user's state                   changelogged   restored by Faust
``T``  a due time-relative re-check     changelogged   restored by Faust
``F``  users a timer tick changed       changelogged   restored by Faust
``M``  a segment member (members tab)   local only     derived from each restored ``U`` record
====== ================================ ============== ==========================================

A write to a changelogged key goes to the partition's RocksDB and, as a record, to the table's
changelog topic (through :class:`processor.runtime.changelog.ChangelogProducer`, not Faust's
per-record table path); a local-only write goes to RocksDB alone. Faust owns the stores, opens
and closes them on rebalances and restores them from the changelog; :meth:`TableStore.flush` and
:meth:`TableStore.persist_offsets` are steps of the commit protocol
(processor/runtime/checkpoint.py) and called from there only.

Two implementations: :class:`RocksTableStore` (the worker: Faust's rocksdict stores) and
:class:`MemoryTableStore` (handler unit tests: sorted dicts, the changelog recorded as a list).
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, Iterator, Protocol

from processor.state import reads
from processor.state.keys import FIRED, MEMBER, TIMER, USER
from processor.state.members import restored_writes
from processor.state.user_state import UserState


def write_batch(db: Any, ops: list[tuple[bytes, bytes | None]]) -> None:
    """Write (key, value | None to delete) to one rocksdict handle in one atomic batch."""
    import rocksdict

    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, value in ops:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    db.write(batch)


class Durability(Enum):
    CHANGELOGGED = "changelogged"  # RocksDB and the changelog topic: restored by Faust
    LOCAL = "local"  # RocksDB only: derived again when the partition is restored


KEY_SPACES: dict[bytes, Durability] = {
    USER: Durability.CHANGELOGGED,
    TIMER: Durability.CHANGELOGGED,
    FIRED: Durability.CHANGELOGGED,
    MEMBER: Durability.LOCAL,
}
_CHANGELOGGED = frozenset(p for p, d in KEY_SPACES.items() if d is Durability.CHANGELOGGED)


def changelogged(key: bytes) -> bool:
    """Whether writes of ``key`` go to the changelog (a key outside every key space is a bug)."""
    space = key[:1]
    if space in _CHANGELOGGED:
        return True
    if space not in KEY_SPACES:
        raise KeyError(f"key {key[:16]!r} is in no declared key space")
    return False


class Changelog(Protocol):
    """Where changelogged writes go (processor/runtime/changelog.py; a list in memory)."""

    acked: dict[int, int]

    async def put(self, partition: int, key: bytes, value: bytes | None) -> None: ...
    async def flush(self) -> None: ...


# ----------------------------------------------------------------- a partition
class PartitionStore(ABC):
    """One partition of the users table (the handlers see it as ``processor.handlers.ports.Partition``)."""

    __slots__ = ("partition",)

    def __init__(self, partition: int) -> None:
        self.partition = partition

    @abstractmethod
    def get(self, key: bytes) -> bytes | None: ...

    @abstractmethod
    def items(self, start: bytes, stop: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) with ``start <= key < stop``, ascending, at most ``limit``."""

    @abstractmethod
    def keys(self, start: bytes, stop: bytes, limit: int | None = None) -> Iterator[bytes]: ...

    @abstractmethod
    async def write(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        """Write (key, value; None deletes) in one batch: the store atomically, then a changelog
        record (a tombstone for a delete) per changelogged key, in order."""

    async def put(self, key: bytes, value: bytes) -> None:
        await self.write([(key, value)])

    async def delete(self, key: bytes) -> None:
        await self.write([(key, None)])

    async def pop(self, key: bytes) -> None:
        """Delete ``key`` if it is there (no tombstone for a key never written)."""
        if self.get(key) is not None:
            await self.delete(key)


class RocksPartition(PartitionStore):
    __slots__ = ("db", "changelog")

    def __init__(self, partition: int, db: Any, changelog: Changelog) -> None:
        super().__init__(partition)
        self.db = db
        self.changelog = changelog

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)  # type: ignore[no-any-return]

    def items(self, start: bytes, stop: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        n = 0
        for k, v in self.db.items(from_key=start):
            if k >= stop or (limit is not None and n >= limit):
                return
            n += 1
            yield k, v

    def keys(self, start: bytes, stop: bytes, limit: int | None = None) -> Iterator[bytes]:
        n = 0
        for k in self.db.keys(from_key=start):
            if k >= stop or (limit is not None and n >= limit):
                return
            n += 1
            yield k

    async def write(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        if len(ops) == 1:
            key, value = ops[0]
            if value is None:
                self.db.delete(key)
            else:
                self.db[key] = value
        else:
            write_batch(self.db, ops)
        for key, value in ops:
            if changelogged(key):
                await self.changelog.put(self.partition, key, value)


class _MemoryPartition(PartitionStore):
    __slots__ = ("data", "changelog")

    def __init__(self, partition: int, changelog: Changelog) -> None:
        super().__init__(partition)
        self.data: dict[bytes, bytes] = {}
        self.changelog = changelog

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def _range(self, start: bytes, stop: bytes, limit: int | None) -> list[bytes]:
        keys = sorted(self.data)
        lo, hi = bisect.bisect_left(keys, start), bisect.bisect_left(keys, stop)
        out = keys[lo:hi]
        return out if limit is None else out[:limit]

    def items(self, start: bytes, stop: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        for k in self._range(start, stop, limit):
            if k in self.data:
                yield k, self.data[k]

    def keys(self, start: bytes, stop: bytes, limit: int | None = None) -> Iterator[bytes]:
        yield from self._range(start, stop, limit)

    async def write(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        for key, value in ops:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        for key, value in ops:
            if changelogged(key):
                await self.changelog.put(self.partition, key, value)


class _SortedHandle:
    """A dict read like a rocksdict handle: ``get``, ``keys(from_key=)``, ``items(from_key=)``."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def keys(self, from_key: bytes = b"") -> Iterator[bytes]:
        keys = sorted(self.data)
        yield from keys[bisect.bisect_left(keys, from_key):]

    def items(self, from_key: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        for k in self.keys(from_key):
            yield k, self.data[k]


# --------------------------------------------------------------- the whole table
class TableStore(ABC):
    """The users table as this worker holds it: its partitions, and reads over those it owns."""

    @abstractmethod
    def partition(self, partition: int) -> PartitionStore: ...

    @abstractmethod
    def owned_partitions(self) -> list[int]:
        """This worker's active partitions, sorted."""

    @abstractmethod
    async def flush(self) -> None:
        """Return once the changelog holds every changelogged write made before the call
        (raises if a record failed). Checkpoint step; processor/runtime/checkpoint.py."""

    @abstractmethod
    def persist_offsets(self) -> None:
        """Record, in each open partition's store, the highest changelog offset acknowledged so
        far: Faust's recovery resumes after it. Checkpoint step."""

    @abstractmethod
    def _handles(self) -> list[tuple[int, Any]]:
        """(partition, handle) of the owned partitions; a handle has ``get``, ``keys(from_key=)``
        and ``items(from_key=)`` (processor/state/reads.py)."""

    def _current(self, handles: list[tuple[int, Any]]) -> Callable[[], bool]:
        return lambda: True

    # -- reads for the HTTP layer (processor/runtime/read_model.py), over the owned partitions
    def user(self, site_id: str, user_id: str) -> UserState | None:
        return reads.user([h for _, h in self._handles()], site_id, user_id)

    def members(self, site_id: str, segment_id: str, after: str = "", limit: int = 50) -> list[reads.Member]:
        """Members of a segment with ``user_id > after``, sorted by user id, at most ``limit``."""
        return reads.members([h for _, h in self._handles()], site_id, segment_id, after, limit)

    def users(self, site_id: str, after: str = "", limit: int = 50) -> list[UserState]:
        """Stored users of a site with ``user_id > after``, sorted by user id, at most ``limit``."""
        return reads.users([h for _, h in self._handles()], site_id, after, limit)

    def scan(self, site_id: str) -> reads.HandleScan:
        """A full-site scan the time-sliced scanner drives (previews, member counts); it reports
        itself not ``current`` once a partition it reads was revoked or re-opened."""
        handles = self._handles()
        return reads.HandleScan([h for _, h in handles], site_id, self._current(handles))


def derived_member_writes(records: Iterable[tuple[int, bytes | None, bytes | None]],
                          current: Callable[[int, bytes], bytes | None]) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """The local-only writes that restored changelog records (partition, key, value) imply:
    members-tab entries derived from each user state, against the state stored before it
    (``current(partition, key)``, or an earlier record of the same batch)."""
    latest: dict[tuple[int, bytes], bytes | None] = {}
    writes: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for partition, key, value in records:
        if not key or not key.startswith(USER):
            continue
        slot = (partition, key)
        old = latest[slot] if slot in latest else current(partition, key)
        latest[slot] = value
        ops = restored_writes(key, old, value)
        if ops:
            writes.setdefault(partition, []).extend(ops)
    return writes


class RocksTableStore(TableStore):
    """The worker's table: Faust's rocksdict store of the ``users`` table, our changelog client."""

    def __init__(self, faust_store: Any, changelog: Changelog, changelog_topic: str,
                 owned: Callable[[], Iterable[int]]) -> None:
        from processor.runtime import faust_compat

        self._compat = faust_compat
        self._faust = faust_store
        self.changelog = changelog
        self._topic = changelog_topic
        self._owned_fn = owned
        self._persisted: dict[int, int] = {}
        faust_compat.around_changelog_restore(faust_store, self._derive_on_restore)

    def partition(self, partition: int) -> PartitionStore:
        return RocksPartition(partition, self._compat.partition_db(self._faust, partition), self.changelog)

    def owned_partitions(self) -> list[int]:
        try:
            return sorted(set(self._owned_fn()))
        except Exception:  # noqa: BLE001 - not assigned yet
            return []

    async def flush(self) -> None:
        await self.changelog.flush()

    def persist_offsets(self) -> None:
        from faust.types import TP

        for partition, offset in list(self.changelog.acked.items()):
            if offset > self._persisted.get(partition, -1) and self._compat.open_db(self._faust, partition) is not None:
                self._faust.set_persisted_offset(TP(self._topic, partition), offset)
                self._persisted[partition] = offset

    def _handles(self) -> list[tuple[int, Any]]:
        return [(p, self._compat.partition_db(self._faust, p)) for p in self.owned_partitions()]

    def _current(self, handles: list[tuple[int, Any]]) -> Callable[[], bool]:
        open_db = self._compat.open_db

        def current() -> bool:
            return all(open_db(self._faust, p) is db for p, db in handles)

        return current

    def _derive_on_restore(self, events: list[Any]) -> Callable[[], None]:
        """Members-tab entries are not changelogged: derive them from each restored user state."""
        db = self._compat.partition_db
        records = [(e.message.partition, e.message.key, e.message.value) for e in events]
        writes = derived_member_writes(records, lambda p, k: db(self._faust, p).get(k))

        def after() -> None:
            for partition, ops in writes.items():
                write_batch(db(self._faust, partition), ops)

        return after


@dataclass
class RecordingChangelog:
    """An in-memory changelog: every record in order (handler unit tests read it)."""

    records: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    acked: dict[int, int] = field(default_factory=dict)
    flushes: int = 0

    async def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.records.append((partition, key, value))
        self.acked[partition] = len(self.records) - 1

    async def flush(self) -> None:
        self.flushes += 1


class MemoryTableStore(TableStore):
    """The table in memory, every partition owned (handler unit tests; no Faust, no Kafka)."""

    def __init__(self, partitions: Iterable[int] = range(8)) -> None:
        self.changelog = RecordingChangelog()
        self._parts = {p: _MemoryPartition(p, self.changelog) for p in partitions}

    def partition(self, partition: int) -> _MemoryPartition:
        return self._parts[partition]

    def owned_partitions(self) -> list[int]:
        return sorted(self._parts)

    def _handles(self) -> list[tuple[int, Any]]:
        return [(p, _SortedHandle(self._parts[p].data)) for p in self.owned_partitions()]

    async def flush(self) -> None:
        await self.changelog.flush()

    def persist_offsets(self) -> None:
        pass

    def restored(self) -> "MemoryTableStore":
        """A new store rebuilt from this one's changelog the way a worker restores a partition:
        changelogged records replayed in order, local-only entries derived from them."""
        new = MemoryTableStore(self._parts)
        records = self.changelog.records
        writes = derived_member_writes(records, lambda p, k: new._parts[p].data.get(k))
        for partition, key, value in records:
            data = new._parts[partition].data
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        # (derived against the state before each record, applied after the batch, as on a worker)
        for partition, ops in writes.items():
            data = new._parts[partition].data
            for key, value in ops:
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
        return new
