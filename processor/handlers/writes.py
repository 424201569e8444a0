"""Write one user's outcome: its state and timer (changelogged), its members-tab entries (local),
then queue its changes (the checkpoint releases them once the changelog holds the state)."""

from __future__ import annotations

from processor.handlers.ports import Changes, Partition
from processor.membership.engine import Outcome
from processor.state.keys import member_key, timer_key
from processor.state.members import member_entry
from processor.state.user_state import encode_state


async def write_outcome(part: Partition, changes: Changes, key: bytes, out: Outcome) -> None:
    """One batch per outcome (the store applies it atomically, then the changelog records follow
    in this order)."""
    ops: list[tuple[bytes, bytes | None]] = []
    if out.dirty:
        ops.append((key, encode_state(out.state)))
    if out.timer is not None:
        old, new = out.timer
        if new:  # the new timer before the old one goes: a crash between leaves both, never none
            ops.append((timer_key(new, key), b""))
        if old:
            old_key = timer_key(old, key)
            if part.get(old_key) is not None:  # no tombstone for a timer never written
                ops.append((old_key, None))
    for change in out.changes:
        mkey = member_key(change.site_id, change.segment_id, change.user_id)
        if change.change == "ADDED":
            ops.append((mkey, member_entry(change.emitted_at, change.matched_rule_ids, change.cause_kind)))
        else:
            ops.append((mkey, None))
    if ops:
        await part.write(ops)
    if out.changes:
        for change in out.changes:
            changes.emit(change, key)
        await changes.backpressure()
