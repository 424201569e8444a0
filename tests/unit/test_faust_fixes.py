"""durable_flush is a snapshot barrier: it waits for what was buffered before the call only."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from processor.runtime.faust_compat import durable_flush


class FakeClient:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def flush(self) -> None:
        self.log.append("client.flush")


async def test_waits_for_records_buffered_before_the_call_then_flushes_the_client() -> None:
    """Three records were buffered, one sent: the barrier returns after the third is sent (not
    waiting for records put later) and only then flushes the Kafka client."""
    log: list[str] = []
    buf = SimpleNamespace(put_count=3, sent_count=1, sent_event=None)
    producer = SimpleNamespace(buffer=buf, _producer=FakeClient(log))

    async def sender() -> None:
        while buf.sent_count < 3:
            await asyncio.sleep(0.01)
            buf.put_count += 1  # the backfill keeps writing: the barrier must not chase it
            buf.sent_count += 1
            log.append(f"sent {buf.sent_count}")
            if buf.sent_event is not None:
                buf.sent_event.set()

    task = asyncio.create_task(sender())
    await asyncio.wait_for(durable_flush(producer), 5)
    await task
    assert log == ["sent 2", "sent 3", "client.flush"]


async def test_nothing_buffered_only_flushes_the_client() -> None:
    """An empty (or never used) buffer: no waiting, the client's batches are still flushed."""
    log: list[str] = []
    await durable_flush(SimpleNamespace(buffer=SimpleNamespace(), _producer=FakeClient(log)))
    assert log == ["client.flush"]


async def test_fetch_max_wait_override_reaches_the_consumers_faust_creates() -> None:
    """Faust passes fetch_max_wait_ms=1500 to every aiokafka consumer it builds; with the override
    set, the consumer gets the configured wait instead, and ``None`` restores Faust's class."""
    import aiokafka
    import faust.transport.drivers.aiokafka as driver

    from processor.runtime.faust_compat import set_fetch_max_wait_ms

    original = aiokafka.AIOKafkaConsumer
    try:
        set_fetch_max_wait_ms(50)
        consumer = driver.aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", fetch_max_wait_ms=1500)
        assert consumer._fetch_max_wait_ms == 50
        assert isinstance(consumer, original)
        set_fetch_max_wait_ms(None)
        assert driver.aiokafka.AIOKafkaConsumer is original
    finally:
        aiokafka.AIOKafkaConsumer = original
