"""Time-relative rules: users whose membership may change with time alone (a ``T`` key per due
re-check) are re-evaluated when a tick reaches their partition.

:meth:`Timers.send_ticks` runs on every worker every few seconds and queues a tick on each owned
partition with a timer due; the tick goes through the control topic, behind that partition's
pending messages, and :meth:`Timers.handle` fires the due timers in key (due time) order.

A tick pops the timers it fires, so its replay after a crash could not find those users again:
each tick records the users it changed (``F`` keys: tick offset + user -> due) and its replay
re-issues their changes first (:meth:`Timers.refire`). Timers are popped last: after a crash the
changelog holds a prefix of a tick's writes, and a timer still there with the state moved on is
a STALE tick whose ``F`` entry re-issues the change.
"""

from __future__ import annotations

import asyncio

import processor.handlers.control as control
from processor.handlers.ports import Bus, CatalogView, Changes, Clock, InputRecord, Partition, Stats, Table, now_ms
from processor.handlers.replay import Replay
from processor.handlers.writes import write_outcome
from processor.membership.engine import apply_tick, reissue_tick
from processor.state.keys import FIRED, TIMER, fired_key, parse_fired_key, parse_timer_key, prefix_end, timer_upper_bound
from processor.state.user_state import decode_state

CHUNK = 500


class Timers:
    def __init__(self, store: Table, changes: Changes, catalog: CatalogView, replay: Replay, stats: Stats,
                 bus: Bus | None = None, clock: Clock = now_ms, chunk: int = CHUNK) -> None:
        self.store = store
        self.changes = changes
        self.catalog = catalog
        self.replay = replay
        self.stats = stats
        self.bus = bus
        self.clock = clock
        self.chunk = chunk

    def due(self, partition: int, at: int) -> bool:
        """Whether ``partition`` has a timer due at or before ``at`` (epoch seconds)."""
        return any(True for _ in self.store.partition(partition).keys(TIMER, timer_upper_bound(at), 1))

    async def send_ticks(self, at: int) -> None:
        """For each owned partition with a timer due, queue a tick behind its pending messages."""
        assert self.bus is not None
        for p in self.store.owned_partitions():
            if self.due(p, at):
                await self.bus.control(p, control.TICK_KEY, control.tick(at))

    async def handle(self, msg: InputRecord, tick: control.Tick) -> None:
        part = self.store.partition(msg.partition)
        await self.refire(part, msg.offset)
        bound = timer_upper_bound(tick.at)
        done = 0
        while True:
            keys = list(part.keys(TIMER, bound, self.chunk))
            if not keys:
                break
            for tk in keys:
                due, ukey = parse_timer_key(tk)
                if self.changes.pending_for(ukey):
                    await self.changes.settle(ukey)
                raw = part.get(ukey)
                if raw:
                    st = decode_state(raw)
                    await self.replay.reconfirm(part, ukey, st, msg)
                    out = apply_tick(st, self.catalog.registry.site(st.site_id).active, due, self.clock(), msg.offset)
                    if out.status != "STALE":
                        done += 1
                        if out.changes:
                            await part.put(fired_key(msg.offset, ukey), due.to_bytes(8, "big"))
                        await write_outcome(part, self.changes, ukey, out)
                await part.pop(tk)  # last: see the module docstring
            await asyncio.sleep(0)
        self.stats.timers_fired(done)

    async def refire(self, part: Partition, tick_offset: int) -> None:
        """Before a tick: re-issue what an earlier run of this very tick changed, drop older entries.

        A previous owner may have processed this tick, popped its timers and recorded the changes,
        then died before they left the outbox; the tick's replay no longer finds those timers. The
        re-issued changes are byte-identical (same cause ``time:{due}``): duplicates at most. The
        state behind them is written again first: it may be a local write whose changelog record
        never left (restarted on its state directory), and nothing else rewrites it.
        """
        entries = []
        for k, v in part.items(FIRED, prefix_end(FIRED)):
            if parse_fired_key(k)[0] > tick_offset:
                break  # a later tick's entries: its own replay re-issues them
            entries.append((k, v))
        for k, v in entries:
            offset, ukey = parse_fired_key(k)
            if offset < tick_offset:
                await part.pop(k)  # processed again or committed before this tick
                continue
            if self.changes.pending_for(ukey):
                await self.changes.settle(ukey)
            raw = part.get(ukey)
            if raw:
                again = reissue_tick(decode_state(raw), int.from_bytes(v, "big"))
                self.stats.count("changes.refired", len(again))
                if again:
                    await part.put(ukey, raw)  # durable before the changes can leave
                for change in again:
                    self.changes.queue(change, ukey)
