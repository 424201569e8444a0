"""Full-site scans (preview, member counts) over a real RocksDB store share the event loop.

50,000 stored users in two rocksdict partitions, written as the worker writes them. The scans
must give the exact answer while other tasks keep running between their slices (structural: a
concurrent task's turns are counted, no clock is asserted), stop when their partition moves or
their deadline passes, and a worker runs at most SCAN_CONCURRENCY of them at once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import rocksdict

from processor.http import scans
from processor.api.errors import ApiError
from processor.catalog.active import ActiveRuleSet
from processor.catalog.model import SiteCatalog
from processor.rules.compiler import compile_condition
from processor.state.keys import member_key, user_key
from processor.state.reads import HandleScan
from processor.state.user_state import Fact, UserState, encode_state

SITE = "scan-site"
USERS = 50_000


def department(i: int) -> str:
    return "Sales" if i % 3 == 0 else "HR"


def is_member(i: int) -> bool:  # already in the segment before the preview
    return i % 5 == 0


def open_db(path: Path) -> rocksdict.Rdict:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    return rocksdict.Rdict(str(path), opts)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[int, Any]]]:
    root = tmp_path_factory.mktemp("scan-store")
    dbs = [(p, open_db(root / f"p{p}")) for p in (0, 1)]
    batches = [rocksdict.WriteBatch(raw_mode=True) for _ in dbs]
    for i in range(USERS):
        uid = f"user{i:06d}"
        facts = {"seg": Fact(True, f"c{i}", "ADDED", "RULE_CHANGED", "r0", ("r0",), 1, 1)} if is_member(i) else {}
        st = UserState(SITE, uid, profile={"department": department(i)}, facts=facts)
        batch = batches[i % 2]
        batch.put(user_key(SITE, uid), encode_state(st))
        if is_member(i):
            batch.put(member_key(SITE, "seg", uid), b'{"since": 1, "rules": ["r0"]}')
    # another site's users sort right after this one's and must not be counted
    batches[0].put(user_key(SITE + "x", "intruder"), encode_state(UserState(SITE + "x", "intruder")))
    for (_, db), batch in zip(dbs, batches):
        db.write(batch)
    yield dbs
    for _, db in dbs:
        db.close()


def candidate() -> ActiveRuleSet:
    cond = compile_condition({"field": "department", "op": "equals", "value": "Sales"}, SiteCatalog(SITE))
    return ActiveRuleSet.build({"seg": [("r1", cond)]})


def site_scan(dbs: list[tuple[int, Any]], current: Any = lambda: True) -> HandleScan:
    """The site's scan over these partitions (as the worker's read model builds it)."""
    return HandleScan([db for _, db in dbs], SITE, current)


def far() -> float:
    return time.monotonic() + 3600


async def run_with_ticker(coro: Any) -> tuple[Any, int]:
    """Run ``coro`` while another task, woken by a timer every millisecond, counts its turns."""
    turns = 0
    done = False

    async def ticker() -> None:
        nonlocal turns
        while not done:
            await asyncio.sleep(0.001)
            turns += 1

    t = asyncio.ensure_future(ticker())
    try:
        result = await coro
    finally:
        done = True
        await t
    return result, turns


async def test_preview_gives_the_exact_answer_while_other_tasks_run(store) -> None:
    """A preview over 50,000 users: other tasks get many turns during it, and its counts are
    exact (expected values come from how the users were written, not from the scanner)."""
    scanner = scans.Scanner(2)
    result, turns = await run_with_ticker(scanner.preview(site_scan(store), candidate(), "seg", 0, far()))
    want_added = sum(1 for i in range(USERS) if department(i) == "Sales" and not is_member(i))
    want_removed = sum(1 for i in range(USERS) if department(i) != "Sales" and is_member(i))
    assert result["evaluated"] == USERS
    assert (result["added"], result["removed"]) == (want_added, want_removed)
    assert len(result["sample_added"]) == scans.SAMPLE
    assert all(department(int(u[4:])) == "Sales" and not is_member(int(u[4:])) for u in result["sample_added"])
    assert scanner.last is not None and scanner.last.yields >= 10, "the scan never gave the loop back"
    assert turns >= 10, "another task did not get to run during the scan"


async def test_counts_give_the_exact_answer_while_other_tasks_run(store) -> None:
    scanner = scans.Scanner(2)
    result, turns = await run_with_ticker(scanner.counts(site_scan(store), far()))
    assert result == {"members": {"seg": sum(1 for i in range(USERS) if is_member(i))}, "users": USERS, "deleted_users": 0}
    assert scanner.last is not None and scanner.last.yields >= 1
    assert turns >= 1


async def test_other_ready_work_goes_first_between_slices(store) -> None:
    """While a scan runs, a task that steps through 200 ready callbacks in a row (like an event
    crossing the consumer, agent, table and outbox) is not held for a slice at each step: the
    scan defers to it. Without that, each step would wait one slice (one scan yield per step).
    (No rest between slices here: the deferral alone is under test.)"""
    scanner = scans.Scanner(2, rest_s=0.0)
    scan = asyncio.ensure_future(scanner.preview(site_scan(store), candidate(), "seg", 0, far()))
    while scanner.last is None or scanner.last.yields < 3:
        await asyncio.sleep(0)
    before = scanner.last.yields
    for _ in range(200):
        await asyncio.sleep(0)  # one step, ready at once
    during = scanner.last.yields - before
    assert not scan.done()
    assert during < 20, f"the scan took {during} slices while 200 ready steps ran"
    assert scanner.last.deferrals > 0
    assert (await scan)["evaluated"] == USERS


async def test_a_zero_slice_yields_after_every_user(store) -> None:
    """The slicing is per item: with a zero budget the scan gives the loop back after each user."""
    scanner = scans.Scanner(2, slice_s=0.0, rest_s=0.0)
    result = await scanner.preview(site_scan(store[:1]), candidate(), "seg", 0, far())
    assert scanner.last is not None and scanner.last.yields == result["evaluated"] == USERS // 2


async def test_a_third_concurrent_scan_is_refused_with_retry_after(store) -> None:
    """Two scans run; the third is refused at once (429 SCAN_BUSY, Retry-After); once they
    finish, a scan runs again."""
    scanner = scans.Scanner(2)
    first = [asyncio.ensure_future(scanner.preview(site_scan(store), candidate(), "seg", 0, far())) for _ in range(2)]
    while scanner.gate.running < 2:
        await asyncio.sleep(0)
    with pytest.raises(ApiError) as err:
        await scanner.counts(site_scan(store), far())
    assert (err.value.status, err.value.code) == (429, "SCAN_BUSY")
    assert err.value.headers()["Retry-After"].isdigit()
    assert all(not t.done() for t in first), "the refusal must not wait for the running scans"
    for r in await asyncio.gather(*first):
        assert r["evaluated"] == USERS
    assert scanner.gate.running == 0
    assert (await scanner.counts(site_scan(store), far()))["users"] == USERS


async def test_a_cancelled_scan_gives_its_slot_back(store) -> None:
    scanner = scans.Scanner(1)
    task = asyncio.ensure_future(scanner.preview(site_scan(store), candidate(), "seg", 0, far()))
    while scanner.gate.running < 1:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert scanner.gate.running == 0


async def test_a_scan_whose_partition_moves_stops_and_releases_the_database(tmp_path: Path) -> None:
    """After a rebalance Faust re-opens the partition; the scan stops (503, retry) at its next
    slice and keeps no handle open, so the same path can be opened again."""
    db = open_db(tmp_path / "p3")
    for i in range(5000):
        db[user_key(SITE, f"u{i:05d}")] = encode_state(UserState(SITE, f"u{i:05d}", profile={"department": "HR"}))
    moved = False
    scanner = scans.Scanner(2, slice_s=0.0, rest_s=0.0)
    moving = site_scan([(3, db)], lambda: not moved)
    task = asyncio.ensure_future(scanner.preview(moving, candidate(), "seg", 0, far()))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    moved = True  # a rebalance dropped the handle while the scan waited for its next slice
    with pytest.raises(ApiError) as err:
        await task
    assert (err.value.status, err.value.code) == (503, "WORKER_UNAVAILABLE")
    assert err.value.retry_after is not None
    del task, err, db, scanner, moving
    await asyncio.sleep(0)  # the loop's handle that resumed this test held the finished task
    again = open_db(tmp_path / "p3")  # raises "lock hold by current process" while a handle is open
    assert len(list(again.keys())) == 5000
    again.close()


async def test_a_scan_past_its_deadline_stops(store) -> None:
    scanner = scans.Scanner(2, slice_s=0.0, rest_s=0.0)
    with pytest.raises(ApiError) as err:
        await scanner.preview(site_scan(store), candidate(), "seg", 0, time.monotonic() - 1)
    assert (err.value.status, err.value.code) == (503, "SCAN_TIMEOUT")
    assert scanner.gate.running == 0
