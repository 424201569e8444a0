"""processor/runtime/dead_letters.py's hold: a message that cannot be read yet (the Schema Registry
does not answer) pauses its partition, nothing is dead-lettered, and once ``ready()`` answers the
partition is sought back to the message and resumed, and the re-read message is processed (a dead
letter's re-read message, by contrast, is skipped). The consumer is a stand-in that records what
the runtime asks of Faust's (processor/runtime/faust_compat.py ``ConsumerPartitions``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from processor.metrics import Metrics
from processor.runtime.dead_letters import DeadLetters


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    acked: bool = False

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass
class Consumer:
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fetched_up_to: int = 0  # the highest offset fetched before the pause

    def generation(self) -> int:
        return 1

    async def pause(self, tp: Any) -> float:
        self.calls.append(("pause", tp))
        return time.monotonic() - 1  # a fetch ended since

    def fetched_since(self, paused_at: float) -> bool:
        return True

    def read_offset(self, tp: Any) -> int | None:
        return self.fetched_up_to

    async def seek(self, tp: Any, offset: int) -> None:
        self.calls.append(("seek", offset))

    async def resume(self, tp: Any) -> None:
        self.calls.append(("resume", tp))


class NoSends:
    sent: list[Any] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        raise AssertionError("a held message is not dead-lettered")


async def wait_until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_a_held_message_pauses_its_partition_and_is_processed_once_readable() -> None:
    consumer, metrics = Consumer(fetched_up_to=5), Metrics()
    dl = DeadLetters("dead-letters", NoSends(), consumer, metrics, max_bytes=1_000_000, retry_max_s=0.02)  # type: ignore[arg-type]
    answers = ["registry down", "registry down", None]
    asked = []

    async def ready() -> str | None:
        asked.append(1)
        return answers[min(len(asked) - 1, 2)]

    msg = Msg("events", 3, 3)
    dl.hold(msg, ready, "registry down")
    assert msg.acked  # parked: Faust's ack cannot mark it committable
    gauge = metrics.input_held.labels("events", "3")
    assert gauge._value.get() == 1
    later = [Msg("events", 3, 4), Msg("events", 3, 5)]
    assert all(dl.holds(m) for m in later) and all(m.acked for m in later)  # parked, not processed
    assert not dl.holds(Msg("events", 2, 9))  # other partitions go on

    await wait_until(lambda: ("resume", TP("events", 3)) in consumer.calls)
    assert consumer.calls == [("pause", TP("events", 3)), ("seek", 3), ("resume", TP("events", 3))]
    assert len(asked) == 3 and gauge._value.get() == 0
    again = Msg("events", 3, 3)
    assert dl.holds(again) is False and not again.acked  # the re-read message is processed
    assert dl.holds(Msg("events", 3, 4)) is False  # and so is what follows


async def test_a_rebalance_drops_a_hold() -> None:
    consumer, metrics = Consumer(), Metrics()
    dl = DeadLetters("dead-letters", NoSends(), consumer, metrics, max_bytes=1_000_000, retry_max_s=0.02)  # type: ignore[arg-type]

    async def never() -> str | None:
        return "registry down"

    dl.hold(Msg("events", 0, 7), never, "registry down")
    await wait_until(lambda: consumer.calls[:1] == [("pause", TP("events", 0))])
    dl.on_revoke()
    assert metrics.input_held.labels("events", "0")._value.get() == 0
    assert dl.holds(Msg("events", 0, 7)) is False  # the next owner re-reads it from the committed offset


class Sends:
    """Takes every dead letter, or refuses them all with ``failing``."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.sent: list[bytes] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        from processor.runtime.exceptions import DeadLetterSendError

        if self.failing:
            raise DeadLetterSendError("broker down", topic)
        self.sent.append(value)


async def test_send_says_whether_the_dead_letter_left_or_its_partition_is_paused() -> None:
    """True once the dead-letter topic took it; False when it did not and the message is parked
    (the guard then does not count the message as handled: no commit passes it)."""
    from processor.contract.models import DeadLetter

    def dead(offset: int) -> DeadLetter:
        return DeadLetter("events", 0, offset, b"k", b"v", "DECODE_ERROR", "why", 1)

    ok = DeadLetters("dead-letters", Sends(), Consumer(), Metrics(), max_bytes=1_000_000,  # type: ignore[arg-type]
                     retry_max_s=0.02)
    assert await ok.send(Msg("events", 0, 3), dead(3)) is True
    consumer = Consumer()
    refused = DeadLetters("dead-letters", Sends(failing=True), consumer, Metrics(),  # type: ignore[arg-type]
                          max_bytes=1_000_000, retry_max_s=60)
    msg = Msg("events", 0, 4)
    assert await refused.send(msg, dead(4)) is False
    assert msg.acked and refused.holds(Msg("events", 0, 5))
    refused.on_revoke()
