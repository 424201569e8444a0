"""The only module that touches Faust's, mode's and aiokafka's private names.

faust-streaming is the host for consumer groups, agents, tables and recovery; the worker needs a
few things it does not offer, and it has bugs that lose input. Everything that depends on its
internals is here, so an upgrade is checked in one file. :func:`check_versions` refuses to start
on a faust-streaming or aiokafka version these patches were not tested with.

Patches (:data:`PATCHES`, installed by :func:`apply`; docs/architecture.md lists the same):

1. ``recovery-seek-before-resume``: ``Recovery.on_recovery_completed`` resumed the stream
   partitions before seeking them to the committed offsets; records fetched in between were
   dropped by the seek and Faust's gap bookkeeping committed past them (user events, backfill
   orders and commands lost after a restart or rebalance; found by the kill -9 oracle test).
   The upstream body with one change: seek first, then resume, no ``await`` in between.
2. ``fetch-frozen-partitions``: Faust gave the consumer thread its *live* set of active
   partitions for a fetch that may wait a second; recovery's end empties that set while the
   fetch waits, aiokafka reads an empty set as "every partition", drains the stream partitions'
   first records and Faust drops them (lost after a restart; tests/integration/test_faust_fixes.py).
   The fetch now gets a frozen copy, and an empty copy fetches nothing.
3. ``commit-through-checkpoint``: not a bug fix, a seam. Faust's periodic and rebalance commits
   hand the offsets they are about to commit to the worker's checkpoint
   (processor/runtime/checkpoint.py), which makes the state durable and releases the changes
   before it lets Faust commit them. The offsets are first cut to what the handlers finished
   (:func:`capped_offsets`): a Faust stream acknowledges the messages it skips at a rebalance.
4. ``producer-buffer-counters``: Faust's ``Producer.flush()`` waits until its send buffer is
   empty, which a busy worker may never reach; counting puts and sends lets
   :func:`durable_flush` wait for the records buffered before the call only.
5. ``consumer-fetch-wait``: Faust hard-codes a 1,500 ms fetch wait for its consumers;
   :func:`set_fetch_max_wait_ms` overrides it (the broker profile's or FETCH_MAX_WAIT_MS).

Private reads (no behaviour change): a table partition's RocksDB handle and its open handles
(``Store._db_for_partition`` / ``_dbs``), a consumer's committed offsets (``_committed_offset``),
the aiokafka client and fetch clock behind a dead letter's partition pause
(:class:`ConsumerPartitions`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, Iterable

from processor.errors import ProcessorError

log = logging.getLogger("processor.faust_compat")

# Versions every patch and private read below was tested with (constraints.txt pins them).
TESTED = {"faust-streaming": ("0.15.3",), "aiokafka": ("0.14.0",)}
PATCHES = (
    "recovery-seek-before-resume",
    "fetch-frozen-partitions",
    "commit-through-checkpoint",
    "producer-buffer-counters",
    "consumer-fetch-wait",
)
_APPLIED = False


class UntestedDependency(ProcessorError):
    """A faust-streaming or aiokafka version the work-arounds were not verified against."""

    def __init__(self, package: str, found: str) -> None:
        tested = ", ".join(TESTED[package])
        super().__init__("UNTESTED_DEPENDENCY",
                         f"{package} {found} is installed; this worker was tested with {tested} only. Its "
                         f"work-arounds patch that package's internals (processor/runtime/faust_compat.py): "
                         f"install the tested version (constraints.txt), or verify every patch against "
                         f"{found} and add it to TESTED", f"$package.{package}")


def check_versions() -> None:
    """Refuse to run on an untested faust-streaming or aiokafka (raises :class:`UntestedDependency`)."""
    for package, tested in TESTED.items():
        try:
            found = version(package)
        except PackageNotFoundError:
            found = "(not installed)"
        if found not in tested:
            raise UntestedDependency(package, found)


def apply() -> None:
    """Check the versions, then install every patch of :data:`PATCHES` (once per process)."""
    global _APPLIED
    if _APPLIED:
        return
    check_versions()
    _recovery_seek_before_resume()
    _fetch_frozen_partitions()
    _commit_through_checkpoint()
    _producer_buffer_counters()
    _APPLIED = True


# ------------------------------------------------------------------ patches
def _recovery_seek_before_resume() -> None:
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


def _fetch_frozen_partitions() -> None:
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


def _commit_through_checkpoint() -> None:
    import faust.transport.consumer as consumer_mod
    from faust.exceptions import ProducerSendError

    async def _commit_tps(self: Any, tps: Iterable[Any], start_new_transaction: bool) -> bool:
        offsets = self._filter_committable_offsets(tps)
        limit = getattr(self.app, "commit_limit", None)
        if limit is not None:
            offsets = capped_offsets(offsets, limit)
        if not offsets:
            return False

        async def commit_offsets() -> bool:  # upstream's _commit_tps from here on
            try:
                await self._handle_attached(offsets)
            except ProducerSendError as exc:
                await self.crash(exc)
                return False
            return bool(await self._commit_offsets(offsets, start_new_transaction=start_new_transaction))

        checkpoint = getattr(self.app, "checkpoint", None)
        if checkpoint is None:
            return await commit_offsets()
        return bool(await checkpoint.commit(commit_offsets))

    consumer_mod.Consumer._commit_tps = _commit_tps


def capped_offsets(offsets: Any, limit: Callable[[str, int], "int | None"]) -> dict[Any, int]:
    """``offsets`` (TP -> offset Faust would commit), each cut to ``limit(topic, partition)`` (the
    offset after the last message the worker handled there; None: leave that partition out).

    Faust commits what its streams acknowledged, and a stream also acknowledges a message it
    *skips* because flow control is off or the message is of an older consumer generation (a
    rebalance: ``Stream.__aiter__``, "ack the filtered out message"). So a commit could pass a
    message no handler saw, and the partition's next reader started after it: lost backfill
    orders after a kill -9 restart (docs/architecture.md). The limit comes from the handlers
    (``Guard.commit_limit``)."""
    out = {}
    for tp, offset in offsets.items():
        most = limit(tp.topic, tp.partition)
        if most is None:
            continue
        if offset > most:
            log.warning("offset commit of %s[%d] cut from %d to %d: the messages in between were not handled",
                        tp.topic, tp.partition, offset, most)
        out[tp] = min(offset, most)
    return out


def route_commits(app: Any, checkpoint: Any) -> None:
    """Faust's offset commits of ``app`` go through ``checkpoint.commit(commit_offsets)``."""
    app.checkpoint = checkpoint


def limit_commits(app: Any, limit: Callable[[str, int], "int | None"]) -> None:
    """Faust's offset commits of ``app`` are cut to ``limit`` (see :func:`capped_offsets`)."""
    app.commit_limit = limit


def _producer_buffer_counters() -> None:
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


async def durable_flush(producer: Any) -> None:
    """Return once every record Faust's ``producer`` buffered before this call is acknowledged:
    the buffer is a FIFO, so wait until as many records were sent as had been put, then for the
    Kafka client's batches of that moment (a snapshot, unlike ``Producer.flush()``)."""
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
        await client.flush()  # aiokafka: waits for the batches that exist now


def set_fetch_max_wait_ms(ms: int | None) -> None:
    """Override the fetch wait Faust hard-codes (1,500 ms) for the consumers it creates from now on."""
    import faust.transport.drivers.aiokafka as driver

    base = getattr(driver.aiokafka.AIOKafkaConsumer, "_faust_compat_base", driver.aiokafka.AIOKafkaConsumer)
    if ms is None:
        driver.aiokafka.AIOKafkaConsumer = base
        return

    class Consumer(base):  # type: ignore[misc, valid-type]
        _faust_compat_base = base

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = ms
            super().__init__(*args, **kwargs)

    driver.aiokafka.AIOKafkaConsumer = Consumer


# ----------------------------------------------------------- table store reads
def partition_db(store: Any, partition: int) -> Any:
    """The RocksDB (rocksdict) handle of one partition of a Faust table store, opened if needed."""
    return store._db_for_partition(partition)


def open_db(store: Any, partition: int) -> Any | None:
    """The handle Faust has open for ``partition`` now (None: not open, e.g. revoked)."""
    return store._dbs.get(partition)


def around_changelog_restore(store: Any, before: Callable[[list[Any]], Callable[[], None]]) -> None:
    """``before(events)`` runs on each batch of changelog records Faust restores into ``store``
    (Faust events with ``.message``), before Faust writes it, so old values are still readable;
    the function it returns runs after the batch is written."""
    restore = store.apply_changelog_batch

    def apply_changelog_batch(batch: Any, to_key: Any, to_value: Any) -> None:
        events = list(batch)
        after = before(events)
        restore(events, to_key, to_value)
        after()

    store.apply_changelog_batch = apply_changelog_batch


# ------------------------------------------------------------------- consumer
def committed_offset(app: Any, topic: str, partition: int) -> int | None:
    """The offset Faust's consumer last committed for a partition (None: none or not started)."""
    from faust.types import TP

    try:
        return app.consumer._committed_offset.get(TP(topic, partition))
    except Exception:  # noqa: BLE001 - consumer not started yet
        return None


def tables_recovered(app: Any) -> bool:
    """Faust's table recovery finished and no rebalance is recovering."""
    try:
        return bool(app.tables.recovery.completed.is_set() and not app.in_recovery)
    except AttributeError:
        return False


class ConsumerPartitions:
    """Pause, seek and resume one partition of a Faust app's aiokafka consumer (dead letters).

    Faust runs the aiokafka client on its own thread and loop, so pause and resume run there
    (``call_thread``); the seek is Faust's ``seek_wait``, which also moves Faust's read position.
    Not Faust's ``pause_partitions``: its flow control can re-activate the partition, and records
    of it in a batch being delivered are then dropped and counted as a gap (committed)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def _thread(self) -> Any:
        return self.app.consumer._thread

    def _client(self) -> Any:
        return self._thread()._ensure_consumer()

    def generation(self) -> int:
        return int(self.app.consumer_generation_id)

    async def pause(self, tp: Any) -> float:
        """Stop fetching ``tp``; returns the consumer thread's monotonic clock right after."""
        from aiokafka.structs import TopicPartition

        client = self._client()

        def pause() -> float:
            client.pause(TopicPartition(tp.topic, tp.partition))
            return time.monotonic()

        return float(await self._thread().call_thread(pause))

    def fetched_since(self, paused_at: float) -> bool:
        """True once a fetch *ended* after the pause: such a fetch returned nothing of the paused
        partition, and Faust starts a fetch only after it delivered the previous one's records."""
        return bool(self._client()._subscription._last_fetch_ended > paused_at)

    def read_offset(self, tp: Any) -> int | None:
        """The offset of the last record of ``tp`` Faust handed to the streams (None: none yet)."""
        return self.app.consumer._read_offset.get(tp)

    async def seek(self, tp: Any, offset: int) -> None:
        await self.app.consumer.seek_wait({tp: offset})

    async def resume(self, tp: Any) -> None:
        from aiokafka.structs import TopicPartition

        client = self._client()
        await self._thread().call_thread(client.resume, TopicPartition(tp.topic, tp.partition))


# ---------------------------------------------------------------- web, asyncio
def drop_faust_views(app: Any) -> None:
    """Register none of Faust's own web views (its /table/ view reads any table key unauthenticated)."""
    from faust.web.base import BlueprintManager

    app.web.blueprints = BlueprintManager()
