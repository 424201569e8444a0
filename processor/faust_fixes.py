"""Targeted fix for faust-streaming 0.15.x that loses input after a restart or rebalance.

``Recovery.on_recovery_completed`` resumes the stream partitions *before* seeking them to the
committed offsets. Records fetched in between (from the old position) are queued, the seek then
discards the queue, and Faust's gap bookkeeping marks the skipped offsets as processed and
commits past them: user events, backfill orders and commands are silently dropped. Found by the
kill -9 oracle test (tests/integration/test_faults.py); the missing events were exactly the
ranges Faust recorded as gaps.

The fix is the upstream method with one change: seek first, then resume, with no ``await``
between resuming the partitions and resuming the flow. Applied once, at import of the app.

Third addition, :func:`durable_flush`: ``Producer.flush()`` waits until Faust's send buffer is
*empty*; while a long backfill keeps writing table keys it never is, so a flush (and the commit
behind it) could wait for the whole backfill. ``durable_flush`` is a snapshot barrier instead:
it waits until every record buffered *before the call* was handed to the Kafka client (the
buffer is a FIFO; ``put`` and ``_send_pending`` are counted), then for the client's batches of
that moment to be acknowledged.

Fourth, :func:`_snapshot_fetch_partitions`: Faust hands the consumer thread its *live* set of
active partitions (``Consumer._active_partitions``) for a fetch that runs later and may wait up
to a second for data. When recovery ends, Faust pauses the changelog partitions by removing them
from that very set; a fetch still waiting then reads an empty set, and aiokafka's
``fetched_records`` takes an empty set as "every partition": it drains the stream partitions'
records (positions move past them) and Faust's ``getmany`` drops them, because those partitions
are not resumed yet. After a restart the first records of a partition were lost silently
(``tests/integration/test_restart.py`` timed out waiting for its warm-up dead letters). The fetch
now gets a frozen copy taken when it is requested, and an empty copy fetches nothing. Test:
``tests/integration/test_faust_fixes.py``.

Second patch (not a bug fix, a hook): ``Consumer._handle_attached`` runs right before Faust
flushes the producer and commits offsets. It now first awaits every coroutine function in
``app.before_commit_hooks``; the processor drains its outbox there (processor/outbox.py), so an
offset is committed only after the changes of the events before it were released.
"""

from __future__ import annotations

import asyncio
from typing import Any

_APPLIED = False


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    import faust.tables.recovery as recovery

    async def on_recovery_completed(self: Any, generation_id: int = 0) -> None:
        consumer = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        coros = [
            asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                              self.standbys_for_table[table]))
            for table in self.tables.values()
        ]
        if coros:
            await asyncio.wait(coros)
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again (generation %s, expected %s)",
                             self.app.consumer_generation_id, generation_id)
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets (before resuming them).")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        self.completed.set()
        self.app.flow_control.resume()
        consumer.resume_flow()
        await self.app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    recovery.Recovery.on_recovery_completed = on_recovery_completed

    import faust.transport.consumer as consumer_mod

    original_handle_attached = consumer_mod.Consumer._handle_attached

    async def _handle_attached(self: Any, commit_offsets: Any) -> None:
        for hook in getattr(self.app, "before_commit_hooks", ()):
            await hook()
        await original_handle_attached(self, commit_offsets)

    consumer_mod.Consumer._handle_attached = _handle_attached

    import faust.transport.producer as producer_mod

    buffer_cls = producer_mod.ProducerBuffer
    original_put = buffer_cls.put
    original_send_pending = buffer_cls._send_pending

    def put(self: Any, fut: Any) -> None:
        self.put_count += 1
        original_put(self, fut)

    async def _send_pending(self: Any, fut: Any) -> None:
        try:
            await original_send_pending(self, fut)
        finally:
            self.sent_count += 1
            if self.sent_event is not None:
                self.sent_event.set()

    buffer_cls.put_count = 0  # class defaults; each buffer's first += makes its own counter
    buffer_cls.sent_count = 0
    buffer_cls.sent_event = None
    buffer_cls.put = put
    buffer_cls._send_pending = _send_pending
    _snapshot_fetch_partitions()
    _APPLIED = True


def _snapshot_fetch_partitions() -> None:
    """A fetch asks for the partitions active when it was requested (see the module docstring)."""
    import faust.transport.drivers.aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    original = thread_cls.getmany

    async def getmany(self: Any, active_partitions: Any, timeout: float) -> Any:
        if active_partitions is not None:
            active_partitions = frozenset(active_partitions)
            if not active_partitions:
                return {}  # aiokafka would read an empty set as "every partition"
        return await original(self, active_partitions, timeout)

    thread_cls.getmany = getmany


def set_fetch_max_wait_ms(ms: int | None) -> None:
    """Override the fetch wait Faust hard-codes (1,500 ms) for the consumers it creates from now on."""
    import faust.transport.drivers.aiokafka as driver

    base = getattr(driver.aiokafka.AIOKafkaConsumer, "_faust_fixes_base", driver.aiokafka.AIOKafkaConsumer)
    if ms is None:
        driver.aiokafka.AIOKafkaConsumer = base
        return

    class Consumer(base):  # type: ignore[misc, valid-type]
        _faust_fixes_base = base

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = ms
            super().__init__(*args, **kwargs)

    driver.aiokafka.AIOKafkaConsumer = Consumer


async def durable_flush(producer: Any) -> None:
    """Return once every record produced before this call is acknowledged (see module docstring)."""
    buf = producer.buffer
    target = getattr(buf, "put_count", 0)
    if getattr(buf, "sent_count", 0) < target:
        if getattr(buf, "sent_event", None) is None:
            buf.sent_event = asyncio.Event()
        while getattr(buf, "sent_count", 0) < target:
            buf.sent_event.clear()
            try:
                await asyncio.wait_for(buf.sent_event.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
    client = getattr(producer, "_producer", None)
    if client is not None:
        await client.flush()  # aiokafka: waits for the batches that exist now (a snapshot)


def write_local(db: Any, ops: list[tuple[bytes, bytes | None]]) -> None:
    """Write (key, value | None to delete) to one partition's RocksDB in one batch, the way
    Faust's rocksdict store writes restored changelog records (raw bytes, no changelog)."""
    import rocksdict

    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, value in ops:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    db.write(batch)
