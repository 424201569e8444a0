"""The outbox releases changes only after a durability flush, in order, and loses none on errors."""

from __future__ import annotations

import asyncio

import pytest

from processor.outbox import DrainTiming, Outbox


class Recorder:
    """Fake producer: records every flush and send in one timeline; can fail on demand."""

    def __init__(self) -> None:
        self.timeline: list[object] = []
        self.fail_flush = 0
        self.fail_send_at: int | None = None
        self.during_flush: list[tuple[bytes, bytes]] = []
        self.outbox: Outbox | None = None

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

    async def send(self, key: bytes, value: bytes) -> None:
        sends = sum(1 for t in self.timeline if t != "flush")
        if self.fail_send_at is not None and sends == self.fail_send_at:
            self.fail_send_at = None
            raise RuntimeError("send failed")
        self.timeline.append((key, value))

    @property
    def sent(self) -> list[tuple[bytes, bytes]]:
        return [t for t in self.timeline if t != "flush"]  # type: ignore[misc]


def make(high_water: int = 20_000) -> tuple[Outbox, Recorder]:
    rec = Recorder()
    box = Outbox(rec.flush, rec.send, high_water=high_water)
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


async def test_a_record_the_client_gave_up_on_fails_the_drain_and_is_sent_again() -> None:
    """The client counts a record it gave up on (the flush itself succeeds): the drain raises
    after its closing flush, the batch goes back to the head, the owner stays pending, and the
    next drain sends the whole batch again (identical bytes, at-least-once)."""
    sent: list[bytes] = []
    failed = [0]

    async def flush() -> None:
        await asyncio.sleep(0)

    async def send(key: bytes, value: bytes) -> None:
        sent.append(key)
        if len(sent) == 2:
            failed[0] += 1  # the client's delivery report for k1: request timed out

    box = Outbox(flush, send, failures=lambda: failed[0], failure_detail=lambda: "request timed out")
    for k, v in recs(3):
        box.put(k, v, owner=b"u1")
    with pytest.raises(RuntimeError, match="request timed out"):
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
    box, rec = make()
    box.put(b"a", b"1", owner=b"u1")
    seen: list[bool] = []
    original = rec.flush

    async def flush() -> None:
        if rec.sent:  # the closing flush of the batch
            seen.append(box.pending_for(b"u1"))
        await original()

    box._flush = flush  # noqa: SLF001 - observe the window between send and acknowledgement
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

    async def send(key: bytes, value: bytes) -> None:
        now[0] += 0.001

    box = Outbox(flush, send, on_drain=timings.append, clock=lambda: now[0])
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

    box2 = Outbox(failing_flush, send, on_drain=timings.append, clock=lambda: now[0])
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
    box = Outbox(rec.flush, rec.send, failures=lambda: failed[0], failure_detail=lambda: "changes[2]: timed out")
    original_send = rec.send

    async def send_then_fail(key: bytes, value: bytes) -> None:
        await original_send(key, value)
        if key == b"k1":
            failed[0] += 1  # the delivery report of k1 says it failed

    box._send = send_then_fail
    for k, v in recs(3):
        box.put(k, v, owner=b"u")
    with pytest.raises(Exception, match=r"1 membership change\(s\) of a batch of 3 not delivered: changes\[2\]: timed out"):
        await box.drain()
    assert len(box) == 3 and box.pending_for(b"u")
    box._send = original_send
    rec.timeline.clear()
    assert await box.drain() == 3  # the count did not grow this time: delivered
    assert rec.sent == recs(3) and not box.pending_for(b"u")
