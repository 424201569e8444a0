"""The guard's commit limit: an offset commit never passes a message no handler finished."""

from __future__ import annotations

import pytest

from tests.support.handler_world import EVENTS, World, event


@pytest.mark.asyncio
async def test_the_limit_is_the_offset_after_the_last_message_handled_on_that_partition() -> None:
    """Events at offsets 0..2 of partition 0 handled: 3 may be committed there, nothing elsewhere."""
    w = World()
    for i in range(3):
        await w.event(event("s1", f"u{i}"), partition=0)
    assert w.guard.commit_limit(EVENTS, 0) == 3
    assert w.guard.commit_limit(EVENTS, 1) is None


@pytest.mark.asyncio
async def test_a_dead_lettered_message_is_handled() -> None:
    """Undecodable input goes to the dead letters and counts as handled (the partition moves on)."""
    w = World()
    await w.event(event("s1", "u1"), partition=0)
    msg = await w.raw(EVENTS, b"\x00not avro", key=b"s1:u2", partition=0)
    assert w.dead_letters.sent and w.dead_letters.sent[-1].source_offset == msg.offset
    assert w.guard.commit_limit(EVENTS, 0) == msg.offset + 1


@pytest.mark.asyncio
async def test_a_held_partition_does_not_advance_the_limit() -> None:
    """A message of a partition that waits for an unsent dead letter is not handled: no commit
    may pass it."""
    w = World()
    first = await w.event(event("s1", "u1"), partition=0)
    w.dead_letters.held.add((EVENTS, 0))
    await w.event(event("s1", "u2"), partition=0)
    assert w.guard.commit_limit(EVENTS, 0) == first.offset + 1


@pytest.mark.asyncio
async def test_a_message_parked_behind_an_unsent_dead_letter_is_not_handled() -> None:
    """Its dead letter could not be sent (the partition pauses behind it): no commit may pass it."""
    w = World()
    first = await w.event(event("s1", "u1"), partition=0)
    w.dead_letters.failing = True
    await w.raw(EVENTS, b"\x00not avro", key=b"s1:u2", partition=0)
    assert w.dead_letters.held == {(EVENTS, 0)} and not w.dead_letters.sent
    assert w.guard.commit_limit(EVENTS, 0) == first.offset + 1


@pytest.mark.asyncio
async def test_a_new_assignment_forgets_what_was_handled() -> None:
    """After a rebalance nothing limits commits from before: until a message is handled again,
    the partition is not committed at all."""
    w = World()
    await w.event(event("s1", "u1"), partition=0)
    w.guard.new_assignment()
    assert w.guard.commit_limit(EVENTS, 0) is None
