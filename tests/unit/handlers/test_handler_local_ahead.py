"""A worker restarted on its state directory after kill -9: its local store can hold writes whose
changelog records never left (RocksDB is written first; Faust's recovery keeps the local store,
processor/runtime/app.py ``recovery_consistency_check=False``). A handler that re-emits what such
a state recorded (``Replay.reconfirm``, ``Timers.refire``) must first make that state durable:
the change may leave at the next release, and an owner restored from the changelog must then
hold the fact behind it (emitted => in the changelog), else it computes the same change_id again
with another ``emitted_at`` (a CONFLICT) or, with the rules changed, a different answer."""

from __future__ import annotations

from processor.state.user_state import UserState
from tests.support.handler_world import CONTROL, EVENTS, Msg, World, event, managed_segment

SITE = "la"
SALES = {"field": "department", "op": "equals", "value": "Sales"}
PARIS = {"field": "city", "op": "equals", "value": "Paris"}
DAY = 86400


def unbacked(w: World) -> list[str]:
    """Released changes whose fact the changelog does not hold: for each (user, segment), the last
    change released must be the fact of the state a new owner restores from the changelog."""
    restored = w.store.restored()
    last = {}
    for r in w.changes.log:
        last[(r.change.site_id, r.change.user_id, r.change.segment_id)] = r.change
    out = []
    for (site, user, segment), change in last.items():
        st: UserState | None = restored.user(site, user)
        fact = st.facts.get(segment) if st is not None else None
        if fact is None or fact.change_id != change.change_id:
            out.append(f"{user}/{segment}: released {change.change} {change.change_id}, changelog holds "
                       f"{(fact.change, fact.change_id) if fact else None}")
    return out


def crash_losing_changelog_since(w: World, records: int) -> None:
    """kill -9: the changelog records from index ``records`` on never left the client, the changes
    queued meanwhile never left the outbox; the local store keeps every write."""
    del w.store.changelog.records[records:]
    w.changes.log.clear()
    w.changes.released()


async def test_a_reconfirmed_state_is_rewritten_before_its_changes_leave() -> None:
    """The dead worker applied an update (jo leaves sales) to its local store only. Restarted on
    that store, a backfill order (a new segment jo does not match) reaches jo before the update
    is replayed: the recorded REMOVED is re-emitted, and the backfill itself writes nothing for
    jo. The changelog must hold the REMOVED before it leaves."""
    w = World(partitions=1)
    await managed_segment(w, SITE, rules={"r": SALES})
    await w.event(event(SITE, "jo", department="Sales"))
    w.changes.released()
    committed_events = w.offsets[(EVENTS, 0)]
    before = len(w.store.changelog.records)
    await w.event(event(SITE, "jo", "USER_UPDATED", department="HR"))
    crash_losing_changelog_since(w, before)
    w.committed[(EVENTS, 0)] = committed_events  # the update was not committed: it will be replayed
    w.committed[(CONTROL, 0)] = w.offsets[(CONTROL, 0)]
    w.wire()  # restarted on its state directory
    await managed_segment(w, SITE, "paris", {"r2": PARIS})
    assert [(r.kind, r.change.change, r.change.segment_id) for r in w.changes.log] == [("again", "REMOVED", "sales")]
    assert unbacked(w) == []


async def test_a_refired_tick_rewrites_the_state_before_its_changes_leave() -> None:
    """The dead worker fired a tick (newbie leaves new starters: state, F entry, timer popped) in
    its local store only. The tick's replay on the restarted worker finds the F entry and
    re-issues the REMOVED; no timer is left to fire, so nothing else writes the state."""
    w = World(partitions=1)
    ends_at = w.now // 1000 + 4
    await managed_segment(w, SITE, "new", {"r": {"field": "timecreated", "op": "within_last", "value": "P30D"}})
    await w.event(event(SITE, "newbie", timecreated=ends_at - 30 * DAY))
    w.changes.released()
    w.committed[(EVENTS, 0)] = w.offsets[(EVENTS, 0)]
    w.now = (ends_at + 1) * 1000
    before = len(w.store.changelog.records)
    [tick] = await w.tick(ends_at + 1)
    assert [c.change for c in w.new_changes()][-1] == "REMOVED"
    crash_losing_changelog_since(w, before)
    w.committed[(CONTROL, 0)] = tick.offset  # the tick was not committed: it is replayed
    w.wire()
    await w.guard.run(Msg(CONTROL, 0, tick.offset, tick.key, tick.value), w.users.handle)
    assert [(r.kind, r.change.change) for r in w.changes.log] == [("again", "REMOVED")]
    assert unbacked(w) == []
