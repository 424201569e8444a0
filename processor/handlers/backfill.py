"""A backfill order: re-evaluate every stored user of one site on this partition for a command's
segments, in chunks, once the catalog holds the command.

Most users need no write; a changed user gets its state, timer and members-tab entries written
and its changes queued. A re-run of the same order (after a crash) re-issues what it recorded
(``apply_backfill``), and a user whose state is ahead of this owner re-emits first (replay.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from processor.handlers.control import BackfillOrder
from processor.handlers.ports import CatalogView, Changes, Clock, InputRecord, Stats, Table, now_ms
from processor.handlers.replay import Replay
from processor.handlers.writes import write_outcome
from processor.membership.engine import apply_backfill
from processor.state.keys import prefix_end, user_prefix
from processor.state.user_state import decode_state

log = logging.getLogger("processor")
CHUNK = 500  # users read per RocksDB pass; the event loop runs between chunks


class Backfill:
    def __init__(self, store: Table, changes: Changes, catalog: CatalogView, replay: Replay, stats: Stats,
                 clock: Clock = now_ms, chunk: int = CHUNK) -> None:
        self.store = store
        self.changes = changes
        self.catalog = catalog
        self.replay = replay
        self.stats = stats
        self.clock = clock
        self.chunk = chunk

    async def handle(self, msg: InputRecord, order: BackfillOrder) -> None:
        await self.catalog.wait_for(order.catalog_offset)
        started = time.monotonic()
        part = self.store.partition(msg.partition)
        prefix = user_prefix(order.site_id)
        start, stop = prefix, prefix_end(prefix)
        seen = changed = 0
        positions = self.replay.positions(msg.partition)  # fixed while this message is processed
        while True:
            chunk = list(part.items(start, stop, self.chunk))
            if not chunk:
                break
            active = self.catalog.registry.site(order.site_id).active
            for k, v in chunk:
                if self.changes.pending_for(k):
                    await self.changes.settle(k)
                st = decode_state(v)
                self.replay.reconfirm(k, st, msg, positions)
                out = apply_backfill(st, active, order.segments, order.cause, self.clock(), msg.offset)
                if out.dirty or out.timer is not None or out.changes:  # most users: nothing to write
                    changed += len(out.changes)
                    await write_outcome(part, self.changes, k, out)
            seen += len(chunk)
            if len(chunk) < self.chunk:
                break
            start = chunk[-1][0] + b"\x00"
            await asyncio.sleep(0)  # let heartbeats and other tasks run during long backfills
        self.stats.backfilled(seen)
        log.info(
            "backfill %s site=%s partition=%d users=%d changes=%d in %.3fs",
            order.command_id, order.site_id, msg.partition, seen, changed, time.monotonic() - started,
            extra={"command_id": order.command_id, "site_id": order.site_id, "partition": msg.partition,
                   "users": seen, "changes": changed},
        )
