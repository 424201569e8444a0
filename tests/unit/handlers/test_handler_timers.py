"""processor/handlers/timers.py without Faust: time alone changes membership (the case of
tests/integration/test_time_relative.py), and a tick's crash replay re-issues its changes (the
deterministic form in tests/integration/test_faults.py, test_crash_after_timer_fired_...)."""

from __future__ import annotations

from processor.contract.codec import encode_membership_change
from processor.state.keys import FIRED, TIMER, fired_key, prefix_end, timer_key, user_key
from tests.support.handler_world import CONTROL, Msg, World, event, managed_segment

SITE = "tr"
DAY = 86400
NEW_STARTERS = {"field": "timecreated", "op": "within_last", "value": "P30D"}


def keys(w: World, partition: int, prefix: bytes) -> list[bytes]:
    return list(w.store.partition(partition).keys(prefix, prefix_end(prefix)))


async def newbie(w: World, ends_at: int, partition: int = 0) -> None:
    await managed_segment(w, SITE, "new", {"r": NEW_STARTERS})
    await w.event(event(SITE, "newbie", timecreated=ends_at - 30 * DAY), partition=partition)
    await w.event(event(SITE, "veteran", timecreated=ends_at - 400 * DAY), partition=partition)


async def test_user_leaves_new_starters_when_the_window_ends_with_no_event() -> None:
    """The ADDED user gets a timer for the end of its 30 days; no tick is queued before that;
    the tick at that second removes it with cause TIME_ELAPSED, no earlier, and pops the timer."""
    w = World(partitions=2)
    now_s = w.now // 1000
    ends_at = now_s + 6
    await newbie(w, ends_at, partition=1)
    assert w.members(SITE, "new") == {"newbie"}
    [tk] = keys(w, 1, TIMER)
    assert tk == timer_key(ends_at + 1, user_key(SITE, "newbie"))  # due once the window has ended
    assert await w.tick(ends_at) == []  # nothing due yet: no tick queued on any partition
    w.now = (ends_at + 1) * 1000
    [tick] = await w.tick(ends_at + 1)
    assert (tick.topic, tick.partition) == (CONTROL, 1)
    removed = w.new_changes()[-1]
    assert (removed.change, removed.cause_kind, removed.user_id) == ("REMOVED", "TIME_ELAPSED", "newbie")
    assert removed.emitted_at // 1000 >= ends_at + 1
    assert w.members(SITE, "new") == set()
    assert keys(w, 1, TIMER) == []
    assert w.stats.counters["timers.fired"] == 1


async def test_a_replayed_tick_re_issues_the_changes_it_recorded() -> None:
    """The worker processed a tick (timer popped, TIME_ELAPSED change recorded in an F entry)
    and died before the change left. The replayed tick finds no timer any more; it re-issues
    the recorded change byte for byte from the F entry. The next tick drops the old entry."""
    w = World(partitions=1)
    ends_at = w.now // 1000 + 4
    await newbie(w, ends_at)
    w.now = (ends_at + 1) * 1000
    [tick] = await w.tick(ends_at + 1)
    removed = w.new_changes()[-1]
    assert keys(w, 0, FIRED) == [fired_key(tick.offset, user_key(SITE, "newbie"))]
    w.changes.log.clear()  # the change never left the dead worker
    w.wire()
    await w.guard.run(Msg(CONTROL, 0, tick.offset, tick.key, tick.value), w.users.handle)
    assert [encode_membership_change(r.change) for r in w.changes.log] == [encode_membership_change(removed)]
    assert w.stats.counters["changes.refired"] == 1
    # a later tick of the partition: the earlier tick's entry goes
    await w.event(event(SITE, "later", timecreated=w.now // 1000 - 30 * DAY + 2))
    w.now += 5_000
    await w.tick(w.now // 1000)
    assert fired_key(tick.offset, user_key(SITE, "newbie")) not in keys(w, 0, FIRED)


async def test_a_timer_the_state_no_longer_expects_is_stale_and_only_popped() -> None:
    """A user whose state moved on (its next check changed) still has an old timer key, as after
    a crash between the new timer's write and the old one's removal: the tick pops it and changes
    nothing."""
    w = World(partitions=1)
    ends_at = w.now // 1000 + 100
    await newbie(w, ends_at)
    stale = timer_key(w.now // 1000 - 5, user_key(SITE, "newbie"))
    await w.store.partition(0).put(stale, b"")
    before = len(w.all_changes())
    await w.tick(w.now // 1000)
    assert len(w.all_changes()) == before
    assert stale not in keys(w, 0, TIMER) and len(keys(w, 0, TIMER)) == 1
    assert w.stats.counters["timers.fired"] == 0


async def test_many_due_timers_fire_across_chunks() -> None:
    w = World(partitions=1, chunk=3)
    now_s = w.now // 1000
    await managed_segment(w, SITE, "new", {"r": NEW_STARTERS})
    for i in range(10):
        await w.event(event(SITE, f"n{i}", timecreated=now_s + i - 30 * DAY))
    assert len(w.members(SITE, "new")) == 10
    w.now = (now_s + 20) * 1000
    await w.tick(now_s + 20)
    assert w.members(SITE, "new") == set() and keys(w, 0, TIMER) == []
    assert w.stats.counters["timers.fired"] == 10
