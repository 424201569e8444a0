"""The dead-letter client and the consumer internals processor/runtime/dead_letters.py relies on.

The client: a real librdkafka producer with no broker reachable must report the failure as
``DeadLetterSendError`` within its delivery timeout (the caller then pauses the partition), and
must never create the topic. The pins: which private attributes of the installed Faust and
aiokafka the partition pause reads, so an upgrade that moves them fails here, not in production.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from processor.config import Settings
from processor.runtime.clients import dead_letter_config as producer_config
from processor.runtime.dead_letters import DeadLetterProducer
from processor.runtime.exceptions import DeadLetterSendError


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_never_creates_the_topic_and_bounds_messages() -> None:
    cfg = producer_config("b:9092", "w-dlq", 1_000_000, 10_000)
    assert cfg["allow.auto.create.topics"] is False
    assert cfg["message.max.bytes"] == 1_000_000
    assert cfg["message.timeout.ms"] == 10_000
    assert cfg["acks"] == "all" and cfg["partitioner"] == "murmur2_random"


async def test_an_undeliverable_dead_letter_raises_within_the_timeout() -> None:
    out = DeadLetterProducer(f"127.0.0.1:{closed_port()}", "t", 1_000_000, 1000)
    started = time.monotonic()
    with pytest.raises(DeadLetterSendError, match="dead-letters"):
        await out.send("dead-letters", b"k", b"v")
    assert time.monotonic() - started < 10


async def test_a_record_over_the_client_limit_raises_at_once() -> None:
    out = DeadLetterProducer(f"127.0.0.1:{closed_port()}", "t", 100_000, 1000)
    with pytest.raises(DeadLetterSendError, match="too large|MSG_SIZE_TOO_LARGE"):
        await out.send("dead-letters", b"k", b"v" * 200_000)


async def test_the_consumer_internals_the_pause_reads_exist(tmp_path: Path) -> None:
    """Faust's consumer: ``_read_offset`` (a dict), its aiokafka thread with ``call_thread`` and
    ``_ensure_consumer``, ``seek_wait``; aiokafka: ``pause``/``resume`` and a fetch context that
    stamps ``_last_fetch_ended`` when a fetch ends."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.consumer.subscription_state import SubscriptionState

    from processor.runtime.app import Runtime

    proc = Runtime(Settings(state_dir=tmp_path, bootstrap_servers=f"127.0.0.1:{closed_port()}"))
    consumer = proc.app.consumer
    assert isinstance(consumer._read_offset, dict)
    assert callable(consumer._thread.call_thread) and callable(consumer._thread._ensure_consumer)
    assert callable(consumer.seek_wait) and isinstance(proc.app.consumer_generation_id, int)
    assert callable(AIOKafkaConsumer.pause) and callable(AIOKafkaConsumer.resume)
    sub = SubscriptionState()
    before = sub._last_fetch_ended
    await asyncio.sleep(0.01)
    with sub.fetch_context():
        pass
    assert sub._last_fetch_ended > before


def test_a_size_limit_too_small_for_a_dead_letter_fails_the_start() -> None:
    """Refused when the worker builds its dead-letter sender, not at the first dead letter."""
    from processor.runtime.dead_letters import DeadLetters

    producer = DeadLetterProducer("127.0.0.1:1", "t", 1000, 1000)
    with pytest.raises(ValueError, match="DEAD_LETTER_MAX_BYTES"):
        DeadLetters("dead-letters", producer, partitions=None, metrics=None, max_bytes=1000)  # type: ignore[arg-type]
