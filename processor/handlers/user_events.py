"""A user event: fold it into the user's state, evaluate the site's active rules, write the
outcome and queue the changes (processor/membership/engine.py decides; this only moves data).

Before the state moves on, the user's earlier changes leave (``settle``), and a state that is
ahead of this owner re-emits what it recorded (processor/handlers/replay.py)."""

from __future__ import annotations

import time

from processor.handlers.ports import CatalogView, Changes, Clock, InputRecord, Stats, Table, Wire, now_ms
from processor.handlers.replay import Replay
from processor.handlers.writes import write_outcome
from processor.membership.engine import apply_user_event
from processor.state.keys import user_key
from processor.state.user_state import decode_state
from processor.wire import SCHEMALESS


class UserEvents:
    def __init__(self, store: Table, changes: Changes, catalog: CatalogView, replay: Replay, stats: Stats,
                 clock: Clock = now_ms, wire: Wire = SCHEMALESS) -> None:
        self.store = store
        self.wire = wire
        self.changes = changes
        self.catalog = catalog
        self.replay = replay
        self.stats = stats
        self.clock = clock

    async def handle(self, msg: InputRecord) -> None:
        started = time.perf_counter()
        ev = self.wire.decode_user_event(msg.key, msg.value)  # a ContractError: the guard dead-letters it
        active = self.catalog.registry.site(ev.site_id).active
        key = user_key(ev.site_id, ev.user_id)
        if self.changes.pending_for(key):
            await self.changes.settle(key)  # this user's earlier changes leave before its state moves on
        part = self.store.partition(msg.partition)
        raw = part.get(key)
        st = decode_state(raw) if raw else None
        if st is not None:
            await self.replay.reconfirm(part, key, st, msg)
        out = apply_user_event(st, ev, msg.offset, active, self.clock())
        await write_outcome(part, self.changes, key, out)
        self.stats.event(ev.event_type, out.status, time.perf_counter() - started)
