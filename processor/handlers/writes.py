"""Write one user's outcome: its state and timer (changelogged), its members-tab entries (local),
then queue its changes (the checkpoint releases them once the changelog holds the state)."""

from __future__ import annotations

from processor.handlers.ports import Changes, Partition
from processor.membership.engine import Outcome
from processor.state.keys import member_key, timer_key
from processor.state.members import member_entry
from processor.state.user_state import encode_state


async def write_outcome(part: Partition, changes: Changes, key: bytes, out: Outcome) -> None:
    if out.dirty:
        await part.put(key, encode_state(out.state))
    if out.timer is not None:
        old, new = out.timer
        if new:  # the new timer before the old one goes: a crash between leaves both, never none
            await part.put(timer_key(new, key), b"")
        if old:
            await part.pop(timer_key(old, key))
    if out.changes:
        for change in out.changes:
            mkey = member_key(change.site_id, change.segment_id, change.user_id)
            if change.change == "ADDED":
                await part.put(mkey, member_entry(change.emitted_at, change.matched_rule_ids, change.cause_kind))
            else:
                await part.delete(mkey)
            changes.emit(change, key)
        await changes.backpressure()
