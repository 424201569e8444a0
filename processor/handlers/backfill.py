"""A backfill order: re-evaluate every stored user of one site on this partition for a command's
segments, in chunks, once the catalog holds the command.

Most users need no write; a changed user gets its state, timer and members-tab entries written
and its changes queued. A re-run of the same order (after a crash) re-issues what it recorded
(``apply_backfill``), and a user whose state is ahead of this owner re-emits first (replay.py).

The partition reports its progress on the catalog log while it runs and when it is done
(processor/handlers/progress.py), without waiting: the result that follows a done report is
published once the partition's changes have left. A run that raises reports the failure before
its order goes to the dead letters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from processor.handlers.control import BackfillOrder
from processor.handlers.ports import CatalogView, Changes, Clock, InputRecord, Stats, Table, now_ms
from processor.handlers.progress import INTERVAL_S, Reporter
from processor.handlers.replay import Replay
from processor.handlers.writes import write_outcomes
from processor.membership.engine import Targets, apply_backfill
from processor.state.keys import prefix_end, user_prefix
from processor.state.user_state import decode_state

log = logging.getLogger("processor")
CHUNK = 500  # users read per RocksDB pass; the event loop runs between chunks


class Backfill:
    def __init__(self, store: Table, changes: Changes, catalog: CatalogView, replay: Replay, stats: Stats,
                 clock: Clock = now_ms, chunk: int = CHUNK, reporter: Reporter | None = None,
                 report_every_s: float = INTERVAL_S, monotonic: Callable[[], float] = time.monotonic,
                 fault_delay: Callable[[BackfillOrder], float] | None = None) -> None:
        """``fault_delay``: seconds each chunk of an order waits first (takeover tests only)."""
        self.store = store
        self.changes = changes
        self.catalog = catalog
        self.replay = replay
        self.stats = stats
        self.clock = clock
        self.chunk = chunk
        self.reporter = reporter
        self.report_every_s = report_every_s
        self.monotonic = monotonic
        self.fault_delay = fault_delay

    async def handle(self, msg: InputRecord, order: BackfillOrder) -> None:
        await self.catalog.wait_for(order.catalog_offset)
        self.stats.count("backfill.orders")
        reporter = self.reporter if self.reporter is not None and self.reporter.tracked(order) else None
        counts = [0, 0, 0]  # users evaluated, added, removed
        last: list[bytes] = []  # the last user with changes queued: the result waits until they left
        try:
            await self._run(msg, order, counts, reporter, last)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if reporter is not None:
                await reporter.failed(order, msg.partition, (counts[0], counts[1], counts[2]),
                                      f"{type(exc).__name__}: {exc}")
            raise
        if reporter is not None:
            await reporter.done(order, msg.partition, (counts[0], counts[1], counts[2]), last[0] if last else None)

    async def _run(self, msg: InputRecord, order: BackfillOrder, counts: list[int], reporter: Reporter | None,
                   last: list[bytes]) -> None:
        started = time.monotonic()
        last_report = self.monotonic()
        part = self.store.partition(msg.partition)
        prefix = user_prefix(order.site_id)
        start, stop = prefix, prefix_end(prefix)
        seen = changed = 0
        targets = Targets(order.segments)
        positions = self.replay.positions(msg.partition)  # fixed while this message is processed
        delay = self.fault_delay(order) if self.fault_delay is not None else 0.0
        while True:
            if delay:
                await asyncio.sleep(delay)
            chunk = list(part.items(start, stop, self.chunk))
            if not chunk:
                break
            active = self.catalog.registry.site(order.site_id).active
            outcomes = []
            for k, v in chunk:
                if self.changes.pending_for(k):
                    await self.changes.settle(k)
                st = decode_state(v)
                await self.replay.reconfirm(part, k, st, msg, positions)
                out = apply_backfill(st, active, targets, order.cause, self.clock(), msg.offset)
                if out.dirty or out.timer is not None or out.changes:  # most users: nothing to write
                    changed += len(out.changes)
                    for c in out.changes:
                        counts[1 if c.change == "ADDED" else 2] += 1
                    outcomes.append((k, out))
                if out.changes or self.changes.pending_for(k):
                    last[:] = [k]
            if outcomes:  # the chunk's users in one store batch, then their changes in order
                await write_outcomes(part, self.changes, outcomes)
            seen += len(chunk)
            counts[0] = seen
            if len(chunk) < self.chunk:
                break
            start = chunk[-1][0] + b"\x00"
            if reporter is not None and self.monotonic() - last_report >= self.report_every_s:
                await reporter.running(order, msg.partition, (counts[0], counts[1], counts[2]))
                last_report = self.monotonic()
            await asyncio.sleep(0)  # let heartbeats and other tasks run during long backfills
        self.stats.backfilled(seen)
        log.info(
            "backfill %s site=%s partition=%d users=%d changes=%d in %.3fs",
            order.command_id, order.site_id, msg.partition, seen, changed, time.monotonic() - started,
            extra={"command_id": order.command_id, "site_id": order.site_id, "partition": msg.partition,
                   "users": seen, "changes": changed},
        )
