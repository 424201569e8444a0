"""Full-site scans of a worker's own partitions (preview, member counts), time-sliced.

A scan reads every stored user of a site (a preview decodes and evaluates each one). Run in one
go on the worker's event loop it would stall the agents, heartbeats and the outbox for as long as
it lasts (docs/performance.md, "Previews under load"). So a scan works in slices of ``slice_s``:
after each it rests and lets other work go first (:meth:`Slicer.pause`), then checks that the
partitions it reads are still this worker's and that its deadline has not passed, and goes on.
The scan itself (which keys, decoding) comes from the read model (:class:`SiteScan`).

Why not a thread: decoding and evaluating are Python, so a thread would hold the GIL as long as
the loop thread lets it and the stall would only be spread differently; slicing on the loop
gives a fixed bound. Why the partition check: RocksDB iterators read a consistent snapshot and
keep their database handle open; after a rebalance Faust re-opens a partition it gets back, which
fails while an old handle is open (it retries each second), so a scan whose partition moved
stops (503, retry) instead of holding the old handle.

A :class:`ScanGate` bounds the scans one worker runs at once (``SCAN_CONCURRENCY``); the excess
is refused at once with 429 ``SCAN_BUSY`` and ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Iterator

from processor.api.errors import ApiError
from processor.catalog.active import ActiveRuleSet
from processor.http.model import SiteScan
from processor.membership.decide import desired
from processor.state.people import Query, person
from processor.state.reads import member
from processor.state.user_state import decode_names

SLICE_S = 0.001  # longest stretch a scan runs without yielding to the event loop (SCAN_SLICE_MS)
REST_S = 0.001  # then it rests this long (SCAN_REST_MS), so the worker is never a busy process
DEFER_S = 0.010  # and after resting, lets ready callbacks go first for up to this long
SAMPLE = 20  # user ids listed per direction in a preview
BUSY_RETRY_AFTER_S = 2


class ScanGate:
    """At most ``limit`` scans at once on this worker; one more is refused, not queued (a queue
    of long scans would only hold the caller's connection while the answer grows stale)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.running = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self.running >= self.limit:
            raise ApiError(429, "SCAN_BUSY",
                           f"this worker is already running {self.running} full-site scans (previews, segment "
                           "counts); retry shortly", retry_after=BUSY_RETRY_AFTER_S)
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1


class Slicer:
    """Decides when a scan yields; counts its yields (tests and the bench read ``yields``)."""

    def __init__(self, scan: SiteScan, deadline: float, slice_s: float = SLICE_S, rest_s: float = REST_S) -> None:
        self.scan = scan
        self.deadline = deadline  # time.monotonic()
        self.slice_s = slice_s
        self.rest_s = rest_s
        self.yields = 0
        self.deferrals = 0
        self.slice_end = time.perf_counter() + slice_s

    async def pause(self) -> None:
        """Let the event loop run, then make sure the scan may go on.

        A scan is background work. It rests ``rest_s`` after each slice (a real timer: the loop
        runs whatever arrives, and the process does not look CPU-bound to the OS scheduler or to
        a container's CPU quota, either of which would otherwise preempt it while events wait).
        Then, while other callbacks are ready to run (the next step of an event being processed,
        a heartbeat, an HTTP request), it yields again instead of taking its next slice, for up
        to ``DEFER_S``: without this every step of every other task could wait one slice (a
        change crosses dozens of steps). asyncio keeps ready callbacks in ``loop._ready``; on an
        event loop without it (uvloop) the scan only rests. Measured in bench/preview_load_bench.py."""
        await asyncio.sleep(self.rest_s)
        self.yields += 1
        ready = _ready_callbacks()
        if ready:
            give_up = time.perf_counter() + DEFER_S
            while ready and time.perf_counter() < give_up:
                await asyncio.sleep(0)
                self.deferrals += 1
        if time.monotonic() > self.deadline:
            raise ApiError(503, "SCAN_TIMEOUT", "the scan did not finish in time (PEER_TIMEOUT_S for member "
                           "counts, SCAN_TIMEOUT_S for a preview); retry later, or raise it for very large sites",
                           retry_after=5)
        if not self.scan.current():
            raise ApiError(503, "WORKER_UNAVAILABLE", "partitions moved between workers during the scan "
                           "(rebalance); retry", retry_after=1)
        self.slice_end = time.perf_counter() + self.slice_s


class Scanner:
    """This worker's full-site scans: each holds a slot of the gate and runs time-sliced."""

    def __init__(self, concurrency: int, slice_s: float = SLICE_S, rest_s: float = REST_S) -> None:
        self.gate = ScanGate(concurrency)
        self.slice_s = slice_s
        self.rest_s = rest_s
        self.last: Slicer | None = None  # the latest scan's slicer (tests read its yields)

    def _slicer(self, scan: SiteScan, deadline: float) -> Slicer:
        self.last = Slicer(scan, deadline, self.slice_s, self.rest_s)
        return self.last

    async def counts(self, scan: SiteScan, deadline: float) -> dict[str, Any]:
        with self.gate.slot():
            return await count_members(scan, self._slicer(scan, deadline))

    async def preview(self, scan: SiteScan, candidate: ActiveRuleSet, segment: str, now: int,
                      deadline: float) -> dict[str, Any]:
        with self.gate.slot():
            return await preview(scan, candidate, segment, now, self._slicer(scan, deadline))

    async def search(self, scan: SiteScan, segment: str, after: str, limit: int, query: Query,
                     deadline: float) -> list[dict[str, Any]]:
        with self.gate.slot():
            return await search_members(scan, segment, after, limit, query, self._slicer(scan, deadline))


def _ready_callbacks() -> Any:
    """The running loop's queue of ready callbacks (asyncio's ``_ready``; None on a loop without
    it, such as uvloop, where a scan only rests between slices)."""
    return getattr(asyncio.get_running_loop(), "_ready", None)


async def count_members(scan: SiteScan, slicer: Slicer) -> dict[str, Any]:
    """Members per segment and stored users of one site, over this worker's partitions."""
    counts: dict[str, int] = {}
    users = deleted = 0
    for seg in scan.member_segments():
        counts[seg] = counts.get(seg, 0) + 1
        if time.perf_counter() >= slicer.slice_end:
            await slicer.pause()
    for is_deleted in scan.user_deleted_flags():
        if is_deleted:  # kept as a tombstone (de-duplication); not a user any more
            deleted += 1
        else:
            users += 1
        if time.perf_counter() >= slicer.slice_end:
            await slicer.pause()
    return {"members": counts, "users": users, "deleted_users": deleted}


async def preview(scan: SiteScan, candidate: ActiveRuleSet, segment: str, now: int,
                  slicer: Slicer) -> dict[str, Any]:
    """Who ``candidate`` (the segment's rules with the one under preview) would add and remove."""
    added: list[str] = []
    removed: list[str] = []
    people: dict[str, dict[str, str | None]] = {}  # name and e-mail of the sampled users
    n_add = n_rem = evaluated = 0
    for st in scan.users():
        now_member = st.is_member(segment)
        if st.deleted and not now_member:  # a deleted user's tombstone: not a user to evaluate
            continue
        evaluated += 1
        would = bool(desired(candidate, segment, st.profile, st.deleted, now))
        if would and not now_member:
            n_add += 1
            if len(added) < SAMPLE:
                added.append(st.user_id)
                people[st.user_id] = person(st.profile)
        elif now_member and not would:
            n_rem += 1
            if len(removed) < SAMPLE:
                removed.append(st.user_id)
                people[st.user_id] = person(st.profile)
        if time.perf_counter() >= slicer.slice_end:
            await slicer.pause()
    return {"evaluated": evaluated, "added": n_add, "removed": n_rem,
            "sample_added": added, "sample_removed": removed, "people": people}


async def search_members(scan: SiteScan, segment: str, after: str, limit: int, query: Query,
                         slicer: Slicer) -> list[dict[str, Any]]:
    """The first ``limit`` members of ``segment`` past ``after`` (user-id order) that ``query``
    matches, each with name and e-mail. The partitions are read merged in user-id order, so a
    common term stops after its first ``limit`` matches; a term that few members match reads the
    whole segment: per member ~4 us (the entry, the user's state, its three name fields, the
    match; docs/performance.md)."""
    rows: list[dict[str, Any]] = []
    for user_id, entry, raw in scan.segment_members(segment, after):
        names = decode_names(raw) if raw else {}
        if query.matches(user_id, names):
            rows.append({**member(user_id, entry).as_dict(), **person(names)})
            if len(rows) >= limit:
                break
        if time.perf_counter() >= slicer.slice_end:
            await slicer.pause()
    return rows
