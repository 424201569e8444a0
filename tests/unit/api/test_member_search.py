"""The member search over a real RocksDB store: members of one segment across two rocksdict
partitions (written as the worker writes them), matched by id, name or e-mail prefix, in user-id
order from a cursor, time-sliced like every scan, and stopped by a rebalance.

Expected answers come from the profiles the test wrote, by a plain prefix check written here.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import rocksdict

from processor.api.errors import ApiError
from processor.http import scans
from processor.state.keys import member_key, user_key
from processor.state.members import member_entry
from processor.state.people import Query
from processor.state.reads import HandleScan
from processor.state.user_state import UserState, encode_state

SITE = "search-site"
FIRST = ["Ada", "Alan", "Grace", "Émile", "Barbara", "Édith"]
LAST = ["Lovelace", "Turing", "Hopper", "Borel", "Liskov", "Piaf"]
N = 6000


def profile(i: int) -> dict[str, Any]:
    first, last = FIRST[i % 6], LAST[(i // 6) % 6]
    return {"firstname": first, "lastname": last, "email": f"{first.lower()}.{i}@example.org", "department": "x"}


def member(i: int) -> bool:
    return i % 4 != 3


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    root = tmp_path_factory.mktemp("search-store")
    out = []
    for p in (0, 1):
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        out.append(rocksdict.Rdict(str(root / f"p{p}"), opts))
    for i in range(N):
        db, uid = out[i % 2], f"u{i:05d}"
        db[user_key(SITE, uid)] = encode_state(UserState(SITE, uid, profile=profile(i)))
        if member(i):
            db[member_key(SITE, "seg", uid)] = member_entry(1000 + i, ("r1",), "RULE_CREATED")
    for db in out:  # a neighbouring segment and site: never listed
        db[member_key(SITE, "seg2", "u00000")] = member_entry(1, ("r9",), "USER_CREATED")
        db[member_key(SITE + "x", "seg", "intruder")] = member_entry(1, ("r9",), "USER_CREATED")
    yield out
    for db in out:
        db.close()


def expected(term: str, after: str = "") -> list[str]:
    t = " ".join(term.split()).casefold()
    out = []
    for i in range(N):
        p, uid = profile(i), f"u{i:05d}"
        values = [uid, p["firstname"], p["lastname"], f"{p['firstname']} {p['lastname']}", p["email"]]
        if member(i) and uid > after and any(v.casefold().startswith(t) for v in values):
            out.append(uid)
    return out


async def search(dbs: list[Any], term: str, after: str = "", limit: int = 500,
                 current: Any = lambda: True, slice_s: float = scans.SLICE_S) -> list[dict[str, Any]]:
    q = Query.parse(term)
    assert q is not None
    slicer = scans.Slicer(HandleScan(dbs, SITE, current), time.monotonic() + 30, slice_s)
    return await scans.search_members(HandleScan(dbs, SITE, current), "seg", after, limit, q, slicer)


def test_segment_members_lists_one_segment_in_user_order_with_each_state(dbs: list[Any]) -> None:
    rows = list(HandleScan(dbs, SITE, lambda: True).segment_members("seg", "u00100"))
    assert [uid for uid, _, _ in rows] == [f"u{i:05d}" for i in range(101, N) if member(i)]
    uid, entry, raw = rows[0]
    assert entry == member_entry(1000 + 101, ("r1",), "RULE_CREATED")
    assert raw == encode_state(UserState(SITE, uid, profile=profile(101)))


@pytest.mark.parametrize("term", ["grace", "LISKOV", "barbara li", "émile.1", "EDITH", "édith p", "u0012", "zzz"])
async def test_every_match_and_nothing_else(dbs: list[Any], term: str) -> None:
    rows = await search(dbs, term, limit=N)
    assert [r["user_id"] for r in rows] == expected(term)
    for r in rows:
        i = int(r["user_id"][1:])
        assert (r["name"], r["email"]) == (f"{FIRST[i % 6]} {LAST[(i // 6) % 6]}", profile(i)["email"])
        assert (r["since"], r["matched_rule_ids"]) == (1000 + i, ["r1"])


async def test_pages_from_a_cursor_add_up_to_the_whole_answer(dbs: list[Any]) -> None:
    want = expected("ada")
    assert len(want) > 300
    got: list[str] = []
    after = ""
    while True:
        page = [r["user_id"] for r in await search(dbs, "ada", after, 97)]
        got += page
        if len(page) < 97:
            break
        after = page[-1]
    assert got == want


async def test_a_search_yields_to_other_tasks(dbs: list[Any]) -> None:
    """A term nobody matches reads every member; other tasks keep running meanwhile."""
    turns = 0
    stop = False

    async def other() -> None:
        nonlocal turns
        while not stop:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    try:
        assert await search(dbs, "nobody-at-all", slice_s=0.0002) == []
    finally:
        stop = True
        await task
    assert turns > 5


async def test_a_rebalance_stops_the_search(dbs: list[Any]) -> None:
    with pytest.raises(ApiError) as err:
        await search(dbs, "nobody-at-all", current=lambda: False, slice_s=0.0)
    assert (err.value.status, err.value.code) == (503, "WORKER_UNAVAILABLE")


def test_states_are_found_for_sparse_members_and_missing_ones_are_none(tmp_path: Path) -> None:
    """A member's state is read by stepping forward or seeking anew: members far apart (more than
    the stepping bound), next to each other, and one whose state is missing all get the right one."""
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    db = rocksdict.Rdict(str(tmp_path / "p0"), opts)
    try:
        states = {}
        for i in range(300):
            uid = f"v{i:04d}"
            states[uid] = encode_state(UserState(SITE, uid, profile={"firstname": f"F{i}"}))
            db[user_key(SITE, uid)] = states[uid]
        chosen = [0, 1, 2, 40, 41, 90, 299]  # runs, gaps beyond the step bound, the last user
        for i in chosen:
            db[member_key(SITE, "seg", f"v{i:04d}")] = member_entry(i, ("r",), "RULE_CREATED")
        db[member_key(SITE, "seg", "v0050x")] = member_entry(1, ("r",), "RULE_CREATED")  # no stored state
        rows = list(HandleScan([db], SITE, lambda: True).segment_members("seg"))
        want = sorted([f"v{i:04d}" for i in chosen] + ["v0050x"])
        assert [uid for uid, _, _ in rows] == want
        assert {uid: raw for uid, _, raw in rows} == {u: states.get(u) for u in want}
    finally:
        db.close()
