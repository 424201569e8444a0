"""processor/runtime/store.py: each key space's durability, one atomic batch per write, members
derived when Faust restores a partition, and the persisted changelog offsets.

``RocksTableStore`` runs over real rocksdict partitions behind a stand-in for Faust's rocksdb
store that has the four members the store uses (``_db_for_partition``, ``_dbs``,
``set_persisted_offset``, ``apply_changelog_batch``, as in faust/stores/rocksdb.py)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import rocksdict

from processor.runtime.store import KEY_SPACES, Durability, MemoryTableStore, RecordingChangelog, RocksTableStore
from processor.state import keys
from processor.state.keys import member_key, timer_key, user_key
from processor.state.members import member_entry
from processor.state.user_state import Fact, UserState, encode_state

ROOT = Path(__file__).resolve().parents[2]


def test_every_key_space_has_a_declared_durability() -> None:
    """Each one-byte prefix constant of processor/state/keys.py is declared, members local only."""
    source = (ROOT / "processor" / "state" / "keys.py").read_text()
    prefixes = {getattr(keys, name) for name in re.findall(r'^([A-Z]+) = b"[A-Z]"', source, re.M)}
    assert prefixes == set(KEY_SPACES) == {b"U", b"T", b"F", b"M"}
    assert [p for p, d in KEY_SPACES.items() if d is Durability.LOCAL] == [b"M"]


async def test_only_changelogged_writes_reach_the_changelog_and_unknown_keys_are_refused() -> None:
    store = MemoryTableStore([0])
    part = store.partition(0)
    u, t, m = user_key("s", "u"), timer_key(5, user_key("s", "u")), member_key("s", "seg", "u")
    await part.write([(u, b"state"), (t, b""), (m, b"{}")])
    await part.write([(m, None), (t, None)])
    assert store.changelog.records == [(0, u, b"state"), (0, t, b""), (0, t, None)]
    assert part.get(m) is None and part.get(u) == b"state"
    with pytest.raises(KeyError):
        await part.put(b"Xunknown", b"v")


class FaustStore:
    """Faust's rocksdb Store as the runtime store uses it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dbs: dict[int, Any] = {}
        self.persisted: dict[tuple[str, int], int] = {}

    def _db_for_partition(self, partition: int) -> Any:
        if partition not in self._dbs:
            opts = rocksdict.Options(raw_mode=True)
            opts.create_if_missing(True)
            self._dbs[partition] = rocksdict.Rdict(str(self.root / f"p{partition}"), opts)
        return self._dbs[partition]

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[(tp.topic, tp.partition)] = offset

    def apply_changelog_batch(self, batch: Any, to_key: Any, to_value: Any) -> None:
        for event in batch:
            db = self._db_for_partition(event.message.partition)
            if event.message.value is None:
                db.delete(event.message.key)
            else:
                db[event.message.key] = event.message.value

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()


def state(user: str, *members: str) -> bytes:
    facts = {seg: Fact(True, f"c-{seg}", "ADDED", "USER_CREATED", "e1", ("r",), 1, 2) for seg in members}
    return encode_state(UserState("s", user, facts=facts))


def event(partition: int, key: bytes, value: bytes | None) -> Any:
    return SimpleNamespace(message=SimpleNamespace(partition=partition, key=key, value=value))


@pytest.fixture
def faust_store(tmp_path: Path) -> Any:
    fs = FaustStore(tmp_path)
    yield fs
    fs.close()


def test_a_restored_partition_gets_its_members_tab_derived(faust_store: FaustStore) -> None:
    """Faust restores user states from the changelog; the entries of the members tab (never in
    the changelog) are derived from them, against the state stored before each record: a user
    who left a segment loses its entry, one restored twice in a batch ends with the last."""
    store = RocksTableStore(faust_store, RecordingChangelog(), "cl", owned=lambda: [0])
    db = faust_store._db_for_partition(0)
    db[user_key("s", "a")] = state("a", "x")
    db[member_key("s", "x", "a")] = member_entry(2, ("r",), "USER_CREATED")
    faust_store.apply_changelog_batch([
        event(0, user_key("s", "a"), state("a", "y")),  # a left x, joined y
        event(0, user_key("s", "b"), state("b", "x")),
        event(0, user_key("s", "b"), state("b", "x", "y")),
        event(0, timer_key(9, user_key("s", "b")), b""),
    ], None, None)
    assert db.get(member_key("s", "x", "a")) is None
    assert [m.user_id for m in store.members("s", "x")] == ["b"]
    assert [m.user_id for m in store.members("s", "y")] == ["a", "b"]


async def test_persisted_offsets_move_forward_and_only_for_open_partitions(faust_store: FaustStore) -> None:
    changelog = RecordingChangelog()
    store = RocksTableStore(faust_store, changelog, "cl", owned=lambda: [0])
    await store.partition(0).put(user_key("s", "a"), state("a"))
    changelog.acked.update({0: 41, 3: 7})  # partition 3 is not open here (revoked)
    store.persist_offsets()
    assert faust_store.persisted == {("cl", 0): 41}
    changelog.acked[0] = 40  # never backwards
    store.persist_offsets()
    assert faust_store.persisted == {("cl", 0): 41}


async def test_one_write_is_one_atomic_batch_in_the_store(faust_store: FaustStore) -> None:
    changelog = RecordingChangelog()
    store = RocksTableStore(faust_store, changelog, "cl", owned=lambda: [0])
    u, m = user_key("s", "a"), member_key("s", "x", "a")
    await store.partition(0).write([(u, state("a", "x")), (m, member_entry(1, ("r",), "C"))])
    assert faust_store._db_for_partition(0).get(m) is not None
    assert [k for _, k, _ in changelog.records] == [u]


def test_a_scan_stops_being_current_when_its_partition_is_reopened(faust_store: FaustStore) -> None:
    store = RocksTableStore(faust_store, RecordingChangelog(), "cl", owned=lambda: [0])
    scan = store.scan("s")
    assert scan.current()
    faust_store._dbs.pop(0).close()  # a rebalance closed it; Faust opens a new handle later
    faust_store._db_for_partition(0)
    assert not scan.current()
