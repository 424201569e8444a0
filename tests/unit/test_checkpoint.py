"""The commit protocol (processor/runtime/checkpoint.py): changes leave only after a durability
flush, in order, lose none on errors, and offsets are committed only after the changes.

(The release tests are the former outbox tests, driven through the checkpoint that now owns
the release; ``drain`` below is ``Checkpoint.release``.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from processor.runtime.checkpoint import Checkpoint
from processor.runtime.exceptions import OutboxSendError
from processor.runtime.outbox import DrainTiming, Outbox, OutboxSink


class Box:
    """An outbox with its checkpoint, read and driven like the former ``Outbox``."""

    def __init__(self, flush: Any, send: Any, high_water: int = 20_000, on_drain: Any = None,
                 clock: Any = None, failures: Any = None, failure_detail: Any = None,
                 persist: Any = None, flush_output: Any = None) -> None:
        self.outbox = Outbox(high_water, clock)
        self.checkpoint = Checkpoint(self.outbox, flush_state=flush, persist=persist or (lambda: None), send=send,
                                     flush_output=flush_output or flush, failures=failures,
                                     failure_detail=failure_detail, on_release=on_drain)
        self.sink = OutboxSink(self.outbox, self.checkpoint.release)

    def __len__(self) -> int:
        return len(self.outbox)

    def put(self, key: bytes, value: bytes, owner: bytes | None = None) -> None:
        self.outbox.put(key, value, owner)

    def pending_for(self, owner: bytes) -> bool:
        return self.outbox.pending_for(owner)

    @property
    def drained(self) -> int:
        return self.outbox.drained

    async def drain(self) -> int:
        return await self.checkpoint.release()

    async def settle(self, owner: bytes) -> None:
        await self.sink.settle(owner)

    async def backpressure(self) -> None:
        await self.sink.backpressure()

    async def run(self, retry_delay: float) -> None:
        await self.checkpoint.run(retry_delay)


class Recorder:
    """Fake producer: records every flush and send in one timeline; can fail on demand."""

    def __init__(self) -> None:
        self.timeline: list[object] = []
        self.fail_flush = 0
        self.fail_send_at: int | None = None
        self.during_flush: list[tuple[bytes, bytes]] = []
        self.outbox: Box | None = None

    async def flush(self) -> None:
        if self.fail_flush:
            self.fail_flush -= 1
            raise RuntimeError("broker down")
        self.timeline.append("flush")
        if self.during_flush and self.outbox is not None:
            for k, v in self.during_flush:
                self.outbox.put(k, v)  # an event processed while the flush awaited acks
            self.during_flush = []
        await asyncio.sleep(0)

    async def send(self, key: bytes, value: bytes, headers: Any = None) -> None:
        sends = sum(1 for t in self.timeline if t != "flush")
        if self.fail_send_at is not None and sends == self.fail_send_at:
            self.fail_send_at = None
            raise RuntimeError("send failed")
        self.timeline.append((key, value))

    @property
    def sent(self) -> list[tuple[bytes, bytes]]:
        return [t for t in self.timeline if t != "flush"]  # type: ignore[misc]


def make(high_water: int = 20_000) -> tuple[Box, Recorder]:
    rec = Recorder()
    box = Box(rec.flush, rec.send, high_water=high_water)
    rec.outbox = box
    return box, rec


def recs(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(b"k%d" % i, b"v%d" % i) for i in range(start, start + n)]


async def test_flush_precedes_every_send_and_order_is_kept() -> None:
    """A drain flushes first, then sends the pending records in the order they were put, then
    flushes again so they are acknowledged."""
    box, rec = make()
    for k, v in recs(5):
        box.put(k, v)
    assert await box.drain() == 5
    assert rec.timeline == ["flush", *recs(5), "flush"]
    assert len(box) == 0


async def test_records_put_during_the_flush_wait_for_the_next_flush() -> None:
    """A record queued while a flush is in progress was not covered by that flush: it is not
    sent by this drain, and the next drain flushes again before sending it."""
    box, rec = make()
    box.put(b"a", b"1")
    rec.during_flush = [(b"b", b"2")]
    assert await box.drain() == 1
    assert rec.timeline == ["flush", (b"a", b"1"), "flush"]
    assert await box.drain() == 1
    assert rec.timeline == ["flush", (b"a", b"1"), "flush", "flush", (b"b", b"2"), "flush"]


async def test_empty_drain_does_not_flush() -> None:
    """Nothing pending: no flush round trip."""
    box, rec = make()
    assert await box.drain() == 0
    assert rec.timeline == []


async def test_failed_flush_keeps_the_batch_and_raises() -> None:
    """If the flush fails nothing is sent, the error reaches the caller (the commit hook, so the
    offset is not committed), and the next drain sends everything in the original order."""
    box, rec = make()
    for k, v in recs(3):
        box.put(k, v)
    rec.fail_flush = 1
    with pytest.raises(RuntimeError):
        await box.drain()
    assert rec.sent == [] and len(box) == 3
    box.put(b"k3", b"v3")
    assert await box.drain() == 4
    assert rec.sent == recs(4)


async def test_failed_send_keeps_the_unsent_tail_at_the_head() -> None:
    """A send failing in the middle puts the whole batch back, ahead of newer records: the records
    already sent go out again (identical bytes, at-least-once), none is lost, order is kept."""
    box, rec = make()
    for k, v in recs(4):
        box.put(k, v)
    rec.fail_send_at = 2
    with pytest.raises(RuntimeError):
        await box.drain()
    box.put(b"k4", b"v4")
    await box.drain()
    assert rec.sent == recs(2) + recs(5)
    assert box.drained == 5


async def test_a_change_s_headers_reach_the_send_and_go_again_unchanged_after_a_failure() -> None:
    """The sink's headers (the CloudEvents attributes) travel with the change through the outbox
    to the client's send; a batch whose send failed goes again with the same headers."""
    from processor.contract import cloudevents
    from processor.contract.codec import encode_membership_change
    from processor.contract.models import MembershipChange

    sent: list[tuple[bytes, bytes, Any]] = []
    fail = [True]

    async def flush() -> None:
        await asyncio.sleep(0)

    async def send(key: bytes, value: bytes, headers: Any = None) -> None:
        sent.append((key, value, headers))
        if fail[0]:
            fail[0] = False
            raise RuntimeError("send failed")

    box = Box(flush, send)
    box.sink = OutboxSink(box.outbox, box.checkpoint.release, headers=cloudevents.header_builder(False))
    ch = MembershipChange("c-1", "s", "seg", "u1", "ADDED", "USER_CREATED", "ev", ("r",), 1_700_000_000_000, 2)
    box.sink.emit(ch, b"u1")
    with pytest.raises(RuntimeError):
        await box.drain()
    await box.drain()
    expected = (b"s:u1", encode_membership_change(ch),
                [("ce_specversion", b"1.0"), ("ce_id", b"c-1"), ("ce_source", b"/sites/s/segments/seg"),
                 ("ce_type", b"lms.segment.membership.changed.v1"),
                 ("ce_time", b"2023-11-14T22:13:20.000Z"), ("ce_subject", b"u1"),
                 ("content-type", b"application/avro")])
    assert sent == [expected, expected]


async def test_a_record_the_client_gave_up_on_fails_the_drain_and_is_sent_again() -> None:
    """The client counts a record it gave up on (the flush itself succeeds): the drain raises
    after its closing flush, the batch goes back to the head, the owner stays pending, and the
    next drain sends the whole batch again (identical bytes, at-least-once)."""
    sent: list[bytes] = []
    failed = [0]

    async def flush() -> None:
        await asyncio.sleep(0)

    async def send(key: bytes, value: bytes, headers: Any = None) -> None:
        sent.append(key)
        if len(sent) == 2:
            failed[0] += 1  # the client's delivery report for k1: request timed out

    box = Box(flush, send, failures=lambda: failed[0], failure_detail=lambda: "request timed out")
    for k, v in recs(3):
        box.put(k, v, owner=b"u1")
    with pytest.raises(OutboxSendError, match="request timed out"):
        await box.drain()
    assert len(box) == 3 and box.pending_for(b"u1") and box.drained == 0
    assert await box.drain() == 3
    assert sent == [b"k0", b"k1", b"k2"] * 2 and not box.pending_for(b"u1")


async def test_backpressure_drains_only_at_high_water() -> None:
    """Below the high-water mark ``backpressure`` returns at once; at the mark it drains inline."""
    box, rec = make(high_water=3)
    for k, v in recs(2):
        box.put(k, v)
    await box.backpressure()
    assert rec.timeline == []
    box.put(b"k2", b"v2")
    await box.backpressure()
    assert rec.sent == recs(3)


async def test_background_loop_releases_what_was_put_and_survives_errors() -> None:
    """``run`` drains after a put, logs and retries a failed drain, and keeps going."""
    box, rec = make()
    task = asyncio.create_task(box.run(retry_delay=0.01))
    try:
        rec.fail_flush = 1
        box.put(b"a", b"1")
        for _ in range(200):
            if rec.sent:
                break
            await asyncio.sleep(0.005)
        assert rec.sent == [(b"a", b"1")]
        box.put(b"b", b"2")
        for _ in range(200):
            if len(rec.sent) == 2:
                break
            await asyncio.sleep(0.005)
        assert rec.sent == [(b"a", b"1"), (b"b", b"2")]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_concurrent_drains_never_interleave_batches() -> None:
    """The background loop and the pre-commit hook may drain at the same time: batches are
    serialized, so the output order equals the put order."""
    box, rec = make()
    for k, v in recs(50):
        box.put(k, v)
    rec.during_flush = recs(50, 50)
    await asyncio.gather(box.drain(), box.drain(), box.drain())
    assert rec.sent == recs(100)


async def test_settle_releases_an_owners_records_before_its_state_moves_on() -> None:
    """``settle(owner)`` returns only after that owner's queued records were flushed and sent;
    other owners' records queued before them go out too (FIFO), later ones are not waited for."""
    box, rec = make()
    box.put(b"x", b"1", owner=b"u1")
    box.put(b"y", b"2", owner=b"u2")
    assert box.pending_for(b"u1") and box.pending_for(b"u2")
    await box.settle(b"u1")
    assert rec.timeline == ["flush", (b"x", b"1"), (b"y", b"2"), "flush"]
    assert not box.pending_for(b"u1") and not box.pending_for(b"u2")
    await box.settle(b"u3")  # nothing pending: no flush
    assert rec.timeline.count("flush") == 2


async def test_owner_stays_pending_until_its_last_record_is_sent() -> None:
    """An owner with records in a failed batch is still pending; a retry clears it."""
    box, rec = make()
    box.put(b"a", b"1", owner=b"u1")
    box.put(b"b", b"2", owner=b"u1")
    rec.fail_send_at = 1
    with pytest.raises(RuntimeError):
        await box.drain()
    assert box.pending_for(b"u1")
    await box.settle(b"u1")
    assert rec.sent == [(b"a", b"1"), (b"a", b"1"), (b"b", b"2")]
    assert not box.pending_for(b"u1")


async def test_owner_is_pending_until_the_final_flush_acknowledged_its_records() -> None:
    """Records handed to ``send`` are not yet acknowledged: while the closing flush waits, the
    owner still counts as pending (its state must not move on)."""
    rec = Recorder()
    seen: list[bool] = []

    async def flush_output() -> None:  # the closing flush of the batch
        seen.append(box.pending_for(b"u1"))
        await rec.flush()

    box = Box(rec.flush, rec.send, flush_output=flush_output)
    box.put(b"a", b"1", owner=b"u1")
    await box.drain()
    assert seen == [True]
    assert not box.pending_for(b"u1")


async def test_each_drain_reports_how_long_its_oldest_record_waited_and_where() -> None:
    """``on_drain`` gets, per completed drain, the oldest record's wait from ``put`` to the
    acknowledgement, split into queued / flush / send / ack; a failed drain reports nothing and
    the retry still measures from the first ``put``."""
    now = [100.0]
    timings: list[DrainTiming] = []

    async def flush() -> None:
        now[0] += 0.010  # each flush round trip takes 10 ms

    async def send(key: bytes, value: bytes, headers: Any = None) -> None:
        now[0] += 0.001

    box = Box(flush, send, on_drain=timings.append, clock=lambda: now[0])
    box.put(b"a", b"1")
    now[0] += 0.005  # a second record 5 ms later, and the drain starts 2 ms after that
    box.put(b"b", b"2")
    now[0] += 0.002
    assert await box.drain() == 2
    t = timings[0]
    assert t.records == 2
    assert t.queued == pytest.approx(0.007)
    assert (t.flush, t.send, t.ack) == (pytest.approx(0.010), pytest.approx(0.002), pytest.approx(0.010))
    assert t.oldest_wait == pytest.approx(0.029)

    fails = [1]

    async def failing_flush() -> None:
        now[0] += 0.010
        if fails[0]:
            fails[0] -= 1
            raise RuntimeError("broker down")

    box2 = Box(failing_flush, send, on_drain=timings.append, clock=lambda: now[0])
    put_at = now[0]
    box2.put(b"c", b"3")
    with pytest.raises(RuntimeError):
        await box2.drain()
    assert len(timings) == 1
    assert await box2.drain() == 1
    assert timings[1].oldest_wait == pytest.approx(now[0] - put_at)
    assert timings[1].queued == pytest.approx(0.010)  # the failed attempt counts as waiting


async def test_a_batch_is_undelivered_when_the_clients_failure_count_grows_during_it() -> None:
    """For a client without a future per record (librdkafka), the outbox compares the client's
    failure count before the batch's sends and after its closing flush: a failure reported while
    the batch was out keeps the whole batch (order intact) and raises; failures counted before the
    batch (an earlier batch's, already charged there) do not."""
    rec = Recorder()
    failed = [3]  # failures from before this drain
    original_send = rec.send
    fail_k1 = [True]

    async def send_then_fail(key: bytes, value: bytes, headers: Any = None) -> None:
        await original_send(key, value)
        if key == b"k1" and fail_k1[0]:
            failed[0] += 1  # the delivery report of k1 says it failed

    box = Box(rec.flush, send_then_fail, failures=lambda: failed[0], failure_detail=lambda: "changes[2]: timed out")
    for k, v in recs(3):
        box.put(k, v, owner=b"u")
    with pytest.raises(Exception, match=r"1 membership change\(s\) of a batch of 3 not delivered: changes\[2\]: timed out"):
        await box.drain()
    assert len(box) == 3 and box.pending_for(b"u")
    fail_k1[0] = False
    rec.timeline.clear()
    assert await box.drain() == 3  # the count did not grow this time: delivered
    assert rec.sent == recs(3) and not box.pending_for(b"u")


# ------------------------------------------------------------- the commit protocol


class Steps:
    """Records every step of the protocol in one timeline."""

    def __init__(self) -> None:
        self.timeline: list[str] = []
        self.fail: str | None = None

    async def flush_state(self) -> None:
        await asyncio.sleep(0)
        if self.fail == "flush_state":
            raise RuntimeError("changelog record failed")
        self.timeline.append("state durable")

    def persist(self) -> None:
        self.timeline.append("offsets persisted")

    async def send(self, key: bytes, value: bytes, headers: Any = None) -> None:
        self.timeline.append(f"send {key.decode()}")

    async def flush_output(self) -> None:
        await asyncio.sleep(0)
        if self.fail == "flush_output":
            raise RuntimeError("output not acknowledged")
        self.timeline.append("changes acknowledged")

    async def commit_offsets(self) -> bool:
        self.timeline.append("offsets committed")
        return True

    def checkpoint(self, outbox: Outbox) -> Checkpoint:
        return Checkpoint(outbox, flush_state=self.flush_state, persist=self.persist, send=self.send,
                          flush_output=self.flush_output)


async def test_commit_makes_state_durable_then_sends_changes_then_commits_offsets() -> None:
    """The whole order of one commit: the changelog holds the state, its acknowledged offsets are
    recorded, the queued changes leave in order and are acknowledged, and only then does Faust
    commit the input offsets."""
    steps = Steps()
    box = Outbox()
    cp = steps.checkpoint(box)
    box.put(b"a", b"1", owner=b"u1")
    box.put(b"b", b"2", owner=b"u2")
    assert await cp.commit(steps.commit_offsets) is True
    assert steps.timeline == ["state durable", "offsets persisted", "send a", "send b", "changes acknowledged",
                              "offsets committed"]
    assert not box.pending_for(b"u1") and len(box) == 0


async def test_a_commit_with_no_pending_change_still_makes_the_state_durable_first() -> None:
    """A state write that moved no membership (a profile update) has no change in the outbox; its
    changelog record must still be acknowledged before the offset that caused it is committed."""
    steps = Steps()
    cp = steps.checkpoint(Outbox())
    await cp.commit(steps.commit_offsets)
    assert steps.timeline == ["state durable", "offsets persisted", "offsets committed"]


@pytest.mark.parametrize("failing", ["flush_state", "flush_output"])
async def test_a_failed_step_commits_no_offset_and_keeps_the_changes(failing: str) -> None:
    """The changelog or the output failing stops the commit: no offset moves, the changes stay
    queued (at the head, in order) and their owners pending; the next commit delivers them."""
    steps = Steps()
    box = Outbox()
    cp = steps.checkpoint(box)
    box.put(b"a", b"1", owner=b"u1")
    steps.fail = failing
    with pytest.raises(RuntimeError):
        await cp.commit(steps.commit_offsets)
    assert "offsets committed" not in steps.timeline
    assert len(box) == 1 and box.pending_for(b"u1")
    steps.fail = None
    steps.timeline.clear()
    assert await cp.commit(steps.commit_offsets) is True
    assert steps.timeline[-3:] == ["send a", "changes acknowledged", "offsets committed"]


async def test_offsets_are_committed_outside_the_release_lock() -> None:
    """Faust's offset commit (a broker round trip) does not hold up the release of changes queued
    meanwhile: a release can run while step 6 is in progress."""
    steps = Steps()
    box = Outbox()
    cp = steps.checkpoint(box)
    released = asyncio.Event()

    async def slow_commit() -> bool:
        box.put(b"late", b"x", owner=b"u9")
        await cp.release()  # would wait forever if the commit still held the lock
        released.set()
        return True

    await asyncio.wait_for(cp.commit(slow_commit), 5)
    assert released.is_set() and "send late" in steps.timeline


async def test_faust_commits_go_through_the_checkpoint() -> None:
    """faust_compat routes Faust's offset commit (Consumer._commit_tps) to the app's checkpoint:
    the checkpoint runs first and Faust's own commit only when the checkpoint lets it through."""
    from types import SimpleNamespace

    import faust.transport.consumer as consumer_mod

    from processor.runtime import faust_compat

    faust_compat.apply()
    order: list[str] = []

    class FakeCheckpoint:
        async def commit(self, commit_offsets: Any) -> bool:
            order.append("checkpoint")
            return bool(await commit_offsets())

    async def handle_attached(offsets: Any) -> None:
        order.append("attached")

    async def commit_offsets(offsets: Any, start_new_transaction: bool = True) -> bool:
        order.append(f"faust commits {dict(offsets)}")
        return True

    app = SimpleNamespace()
    faust_compat.route_commits(app, FakeCheckpoint())
    consumer = SimpleNamespace(app=app, _filter_committable_offsets=lambda tps: {"tp0": 5},
                               _handle_attached=handle_attached, _commit_offsets=commit_offsets)
    assert await consumer_mod.Consumer._commit_tps(consumer, ["tp0"], True) is True  # type: ignore[arg-type]
    assert order == ["checkpoint", "attached", "faust commits {'tp0': 5}"]


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


def test_capped_offsets_cut_each_partition_to_its_limit_and_leave_out_unhandled_ones() -> None:
    """Faust's offsets past the handlers' limit are cut to it, lower ones kept, partitions without
    a limit (nothing handled in this assignment) left out."""
    from processor.runtime import faust_compat

    a, b, c = _TP("t", 0), _TP("t", 1), _TP("t", 2)
    limits = {("t", 0): 46, ("t", 1): 90}
    out = faust_compat.capped_offsets({a: 48, b: 80, c: 7}, lambda t, p: limits.get((t, p)))
    assert out == {a: 46, b: 80}


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
    faust_compat.limit_commits(consumer.app, lambda t, p: {("t", 0): 46}.get((t, p)))
    assert await consumer_mod.Consumer._commit_tps(consumer, [a, b], False) is True
    assert committed == [{a: 46}]
