"""The guard's commit limit: an offset commit never passes a message no handler finished."""

from __future__ import annotations

import pytest

from processor.runtime.faust_compat import capped_offsets
from processor.runtime.faust_compat import limit_commits
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
async def test_a_new_assignment_forgets_what_was_handled() -> None:
    """After a rebalance nothing limits commits from before: until a message is handled again,
    the partition is not committed at all."""
    w = World()
    await w.event(event("s1", "u1"), partition=0)
    w.guard.new_assignment()
    assert w.guard.commit_limit(EVENTS, 0) is None


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


def test_capped_offsets_cut_each_partition_to_its_limit_and_leave_out_unhandled_ones() -> None:
    """Faust's offsets past the limit are cut to it, lower ones kept, partitions without a limit dropped."""
    a, b, c = _TP("t", 0), _TP("t", 1), _TP("t", 2)
    limits = {("t", 0): 46, ("t", 1): 90}
    out = capped_offsets({a: 48, b: 80, c: 7}, lambda t, p: limits.get((t, p)))
    assert out == {a: 46, b: 80}


@pytest.mark.asyncio
async def test_faust_commits_through_the_seam_are_cut_to_the_limit() -> None:
    """The patched ``Consumer._commit_tps`` commits what Faust computed, cut by the app's limit."""
    import faust.transport.consumer as consumer_mod

    from processor.runtime import faust_compat

    faust_compat.apply()
    a, b = _TP("t", 0), _TP("t", 1)
    committed: list[dict] = []

    class App:
        checkpoint = None

    class FakeConsumer:
        app = App()

        def _filter_committable_offsets(self, tps: object) -> dict:
            return {a: 48, b: 12}

        async def _handle_attached(self, offsets: object) -> None:
            return None

        async def _commit_offsets(self, offsets: dict, start_new_transaction: bool = True) -> bool:
            committed.append(dict(offsets))
            return True

    consumer = FakeConsumer()
    limit_commits(consumer.app, lambda t, p: {("t", 0): 46}.get((t, p)))
    assert await consumer_mod.Consumer._commit_tps(consumer, [a, b], False) is True
    assert committed == [{a: 46}]
