"""Unit tests for processor/changelog.py (ChangelogWriter), driven with a fake client.

Spec: changelog records leave in write order per partition, without the agent waiting for the
broker; a slow partition does not hold the others; ``flush`` returns once everything put before
it is acknowledged; a record that is not acknowledged is fatal (never silently dropped).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from processor.changelog import ChangelogError
from processor.changelog_writer import ChangelogWriter


@dataclass(frozen=True)
class Meta:
    offset: int


class FakeClient:
    """Hands out futures like a Kafka client; the test acknowledges or fails them."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, bytes | None]] = []
        self.futures: list[asyncio.Future] = []
        self.gates: dict[int, asyncio.Event] = {}  # partition -> send blocks until set
        self.offsets: dict[int, int] = {}

    async def send(self, partition: int, key: bytes, value: bytes | None) -> asyncio.Future:
        gate = self.gates.get(partition)
        if gate is not None:
            await gate.wait()
        self.sent.append((partition, key, value))
        fut = asyncio.get_running_loop().create_future()
        fut.partition = partition  # type: ignore[attr-defined]
        self.futures.append(fut)
        return fut

    def ack_all(self) -> None:
        for fut in self.futures:
            if not fut.done():
                p = fut.partition  # type: ignore[attr-defined]
                self.offsets[p] = self.offsets.get(p, -1) + 1
                fut.set_result(Meta(self.offsets[p]))


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_records_leave_in_put_order_per_partition_and_partitions_overlap() -> None:
    """Partition 0 is stuck at the client; partition 1's records still go out, and partition 0's
    go out in put order once it moves."""
    async def main() -> None:
        client = FakeClient()
        client.gates[0] = asyncio.Event()
        w = ChangelogWriter(client.send)
        for i in range(3):
            await w.put(0, f"a{i}".encode(), b"v")
            await w.put(1, f"b{i}".encode(), None)
        await _settle()
        assert client.sent == [(1, b"b0", None), (1, b"b1", None), (1, b"b2", None)]
        assert len(w) == 3
        client.gates[0].set()
        await _settle()
        assert [k for p, k, _ in client.sent if p == 0] == [b"a0", b"a1", b"a2"]
        assert len(w) == 0
    asyncio.run(main())


def test_flush_waits_for_the_acknowledgement_of_what_was_put_before_it() -> None:
    """flush does not return while a record put before it is unacknowledged; the acknowledged
    offsets are the highest per partition."""
    async def main() -> None:
        client = FakeClient()
        w = ChangelogWriter(client.send)
        await w.put(2, b"k", b"v1")
        await w.put(2, b"k", b"v2")
        flush = asyncio.ensure_future(w.flush())
        await _settle()
        assert not flush.done() and len(client.sent) == 2
        client.ack_all()
        await asyncio.wait_for(flush, 1)
        assert w.acked == {2: 1}
    asyncio.run(main())


def test_flush_does_not_wait_for_records_put_after_it() -> None:
    """A flush covers a snapshot: a busy agent putting more records cannot starve it."""
    async def main() -> None:
        client = FakeClient()
        w = ChangelogWriter(client.send)
        await w.put(0, b"k1", b"v")
        flush = asyncio.ensure_future(w.flush())
        await _settle()
        client.ack_all()
        client.gates[0] = asyncio.Event()  # later records get stuck at the client
        await w.put(0, b"k2", b"v")
        await asyncio.wait_for(flush, 1)
        assert client.sent == [(0, b"k1", b"v")]
    asyncio.run(main())


def test_an_unacknowledged_record_is_fatal() -> None:
    """A failed record: on_error runs once, flush raises (so the outbox never releases the
    changes behind it and no offset is committed), and later puts raise too."""
    async def main() -> None:
        client = FakeClient()
        errors: list[BaseException] = []
        w = ChangelogWriter(client.send)
        w.on_error = errors.append
        await w.put(0, b"k", b"v")
        await _settle()
        client.futures[0].set_exception(OSError("broker gone"))
        await _settle()
        with pytest.raises(ChangelogError, match="broker gone"):
            await w.flush()
        with pytest.raises(ChangelogError):
            await w.put(0, b"k2", b"v")
        assert len(errors) == 1 and isinstance(errors[0], OSError)
    asyncio.run(main())


def test_a_send_that_raises_is_fatal_and_the_record_is_kept() -> None:
    """The client refuses the record outright: the error surfaces at flush; the record stays
    queued (it was never handed over)."""
    async def main() -> None:
        async def refuse(partition: int, key: bytes, value: bytes | None) -> asyncio.Future:
            raise RuntimeError("producer closed")
        w = ChangelogWriter(refuse)
        await w.put(0, b"k", b"v")
        await _settle()
        with pytest.raises(ChangelogError, match="producer closed"):
            await w.flush()
        assert len(w) == 1
    asyncio.run(main())


def test_put_waits_above_the_high_water_mark() -> None:
    """The agent is held back (not memory) once too much is queued, and resumes as it drains."""
    async def main() -> None:
        client = FakeClient()
        client.gates[0] = asyncio.Event()
        w = ChangelogWriter(client.send, high_water=3)
        await w.put(0, b"a", b"v")
        await w.put(0, b"b", b"v")
        third = asyncio.ensure_future(w.put(0, b"c", b"v"))
        await _settle()
        assert not third.done() and len(w) == 3
        client.gates[0].set()
        await asyncio.wait_for(third, 1)
        await _settle()
        assert [k for _, k, _ in client.sent] == [b"a", b"b", b"c"]
    asyncio.run(main())
