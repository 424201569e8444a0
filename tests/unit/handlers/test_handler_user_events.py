"""processor/handlers/user_events.py without Faust: the cases tests/integration/test_user_events.py
covers end to end, plus the replay rules a crash exercises (docs/operations.md)."""

from __future__ import annotations

import pytest

from processor.contract.codec import encode_membership_change
from processor.state.keys import MEMBER, TIMER, USER, member_key, user_key
from processor.state.user_state import decode_state
from tests.support.handler_world import CONTROL, EVENTS, World, command, event, managed_segment

SITE = "s1"
SALES = {"field": "department", "op": "equals", "value": "Sales"}


async def test_created_matching_user_is_added_then_removed_when_no_longer_matching() -> None:
    w = World()
    await managed_segment(w, SITE, rules={"r-sales": SALES})
    await w.event(event(SITE, "alice", department="Sales", city="Paris"))
    [added] = w.new_changes()
    assert (added.change, added.segment_id, added.user_id, added.cause_kind) == ("ADDED", "sales", "alice",
                                                                                 "USER_CREATED")
    assert added.matched_rule_ids == ("r-sales",)
    await w.event(event(SITE, "alice", "USER_UPDATED", department="Marketing"))
    removed = w.new_changes()[1]
    assert (removed.change, removed.cause_kind, removed.user_id) == ("REMOVED", "USER_UPDATED", "alice")
    assert removed.change_id != added.change_id
    assert w.stats.counters["user_events.APPLIED"] == 2


async def test_patch_keeps_untouched_fields_and_null_clears_one() -> None:
    w = World()
    await managed_segment(w, SITE, rules={"r": {"all": [SALES, {"field": "city", "op": "equals", "value": "Paris"}]}})
    await w.event(event(SITE, "bob", department="Sales", city="Lyon"))
    assert w.new_changes() == []
    await w.event(event(SITE, "bob", "USER_UPDATED", city="Paris"))  # department still remembered as Sales
    assert [(c.change, c.cause_kind) for c in w.new_changes()] == [("ADDED", "USER_UPDATED")]
    await w.event(event(SITE, "bob", "USER_UPDATED", department=None))
    assert [c.change for c in w.new_changes()] == ["ADDED", "REMOVED"]


async def test_deleted_user_leaves_every_managed_segment() -> None:
    w = World()
    await managed_segment(w, SITE, "sales", {"r1": SALES})
    await managed_segment(w, SITE, "paris", {"r2": {"field": "city", "op": "equals", "value": "Paris"}})
    await w.event(event(SITE, "carol", department="Sales", city="Paris"))
    assert len(w.new_changes()) == 2
    await w.event(event(SITE, "carol", "USER_DELETED"))
    removed = [c for c in w.new_changes() if c.change == "REMOVED"]
    assert sorted(c.segment_id for c in removed) == ["paris", "sales"]
    assert {c.cause_kind for c in removed} == {"USER_DELETED"}
    assert w.members(SITE, "sales") == w.members(SITE, "paris") == set()


async def test_unmanaged_segment_is_never_touched() -> None:
    """A segment whose automation is disabled (without removing members) is frozen: neither a
    member that stops matching nor a new matching user changes it."""
    w = World()
    await managed_segment(w, SITE, rules={"r": SALES})
    await w.event(event(SITE, "dan", department="Sales"))
    assert (await w.command(command(SITE, "DisableSegmentAutomation", segment_id="sales",
                                    remove_members=False))).status == "ACCEPTED"
    await w.event(event(SITE, "dan", "USER_UPDATED", department="HR"))
    await w.event(event(SITE, "erin", department="Sales"))
    assert [c.user_id for c in w.new_changes()] == ["dan"]
    assert w.members(SITE, "sales") == {"dan"}


async def test_the_same_event_twice_changes_nothing_the_second_time() -> None:
    """A duplicate (same event id at a new offset) is recorded but emits nothing new."""
    w = World()
    await managed_segment(w, SITE, rules={"r": SALES})
    ev = event(SITE, "frank", department="Sales")
    await w.event(ev)
    await w.event(ev)
    await w.event(event(SITE, "frank", "USER_UPDATED", department="HR"))
    assert [c.change for c in w.new_changes()] == ["ADDED", "REMOVED"]
    assert w.stats.counters["user_events.DUPLICATE"] == 1


async def test_a_replayed_event_re_emits_its_changes_byte_for_byte() -> None:
    """After a crash the same message (same offset) comes again: it is not re-applied, but every
    change it caused is emitted again with identical bytes (its output may have been lost)."""
    w = World()
    await managed_segment(w, SITE, rules={"r": SALES})
    ev = event(SITE, "gina", department="Sales")
    msg = await w.event(ev)
    first = w.new_changes()[0]
    w.now += 60_000  # a later emission time would change the bytes if it were recomputed
    await w.event(ev, offset=msg.offset)
    again = w.all_changes()[-1]
    assert encode_membership_change(again) == encode_membership_change(first)
    assert w.stats.counters["user_events.REPLAYED"] == 1


async def test_state_and_timer_are_changelogged_members_tab_entries_are_local_and_derived_on_restore() -> None:
    """The store's key-space policy: the user state (U) and its time-relative re-check (T) go to
    the changelog, the members-tab entry (M) only to the local store; a worker that restores the
    partition from the changelog derives the same entry again."""
    w = World()
    await managed_segment(w, SITE, rules={"r": {"all": [SALES, {"field": "timecreated", "op": "within_last",
                                                                 "value": "P30D"}]}})
    await w.event(event(SITE, "hugo", department="Sales", timecreated=w.now // 1000))
    part = w.store.partition(0)
    mkey = member_key(SITE, "sales", "hugo")
    assert part.get(mkey) is not None
    logged = {k[:1] for _, k, _ in w.store.changelog.records}
    assert USER in logged and TIMER in logged and MEMBER not in logged
    restored = w.store.restored()
    assert restored.partition(0).get(mkey) == part.get(mkey)
    assert restored.partition(0).get(user_key(SITE, "hugo")) == part.get(user_key(SITE, "hugo"))
    assert [m.user_id for m in restored.members(SITE, "sales")] == ["hugo"]


async def test_a_user_whose_changes_are_still_pending_waits_for_them() -> None:
    """e1 added the user and its change has not left yet: e2 waits until it has (settle) before
    it moves the state on, so a crash can never leave only e2's REMOVED downstream."""
    w = World()
    await managed_segment(w, SITE, rules={"r": SALES})
    await w.event(event(SITE, "ivan", department="Sales"))
    assert w.changes.pending_for(user_key(SITE, "ivan"))
    await w.event(event(SITE, "ivan", "USER_UPDATED", department="HR"))
    assert w.changes.settled == [user_key(SITE, "ivan")]


async def test_a_state_ahead_of_this_owner_is_reconfirmed_before_an_event_supersedes_it() -> None:
    """A backfill order changed the user (its state records the control offset), then the worker
    died before the change left. The new owner's committed control offset is behind the state; a
    user event reaches the user before the order is replayed: the recorded ADDED is re-emitted,
    byte-identical, before the event's REMOVED supersedes it; once per assignment."""
    w = World(partitions=1)
    await managed_segment(w, SITE)
    await w.event(event(SITE, "jo", department="Sales"))
    rule = command(SITE, "CreateRule", rule_id="r", segment_id="sales", name="r", condition=SALES)
    await w.command(rule)
    [recorded] = w.new_changes()
    assert recorded.cause_kind == "RULE_CREATED"
    order_offset = w.offsets[(CONTROL, 0)] - 1
    w.changes.log.clear()
    w.changes.released()
    w.committed[(CONTROL, 0)] = order_offset  # the order was never committed: it will be replayed
    w.committed[(EVENTS, 0)] = w.offsets[(EVENTS, 0)]
    w.wire()  # a new owner
    await w.event(event(SITE, "jo", "USER_UPDATED", department="HR"))
    assert [(r.kind, r.change.change) for r in w.changes.log] == [("again", "ADDED"), ("new", "REMOVED")]
    assert encode_membership_change(w.changes.log[0].change) == encode_membership_change(recorded)
    assert w.stats.counters["changes.reconfirmed"] == 1
    await w.event(event(SITE, "jo", "USER_UPDATED", department="Sales"))
    assert [r.kind for r in w.changes.log].count("again") == 1


@pytest.mark.parametrize("value", [b"", b"\x00garbage", None])
async def test_an_undecodable_event_is_dead_lettered_with_its_code_and_the_next_goes_on(value: bytes | None) -> None:
    w = World()
    await managed_segment(w, SITE, rules={"r": SALES})
    bad = await w.raw(EVENTS, value, key=b"s1:x")
    [dl] = w.dead_letters.sent
    assert (dl.source_topic, dl.source_partition, dl.source_offset) == (EVENTS, 0, bad.offset)
    assert dl.error_code == "DECODE_ERROR" and dl.error.startswith("$: ")
    assert w.replay.done_offset(EVENTS, 0) == bad.offset
    await w.event(event(SITE, "kim", department="Sales"))
    assert [c.user_id for c in w.new_changes()] == ["kim"]


async def test_a_handler_bug_is_dead_lettered_as_processing_error_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    w = World()

    async def broken(msg: object) -> None:
        raise KeyError("boom")

    msg = w.message(EVENTS, 1, b"k", b"v")
    await w.guard.run(msg, broken)
    [dl] = w.dead_letters.sent
    assert dl.error_code == "PROCESSING_ERROR" and "KeyError" in dl.error
    assert "processing failed" in caplog.text
    assert w.stats.counters["dead_letters.PROCESSING_ERROR"] == 1


async def test_a_message_of_a_partition_waiting_for_a_dead_letter_is_not_processed() -> None:
    w = World()
    await managed_segment(w, SITE, rules={"r": SALES})
    w.dead_letters.held.add((EVENTS, 0))
    await w.event(event(SITE, "lee", department="Sales"))
    assert w.new_changes() == [] and w.state(SITE, "lee") is None


async def test_the_stored_state_records_the_event_offset() -> None:
    w = World()
    await managed_segment(w, SITE, rules={"r": SALES})
    msg = await w.event(event(SITE, "max", department="Sales"), partition=1)
    raw = w.store.partition(1).get(user_key(SITE, "max"))
    assert raw is not None and decode_state(raw).last_offset == msg.offset
