"""Edge: index the membership-changes topic and the catalog log into this worker's history index.

One thread per worker reads every partition of ``segment-automation.membership-changes.v1`` and
the catalog log's single partition with a group-less librdkafka consumer (manual assignment, no
offsets committed anywhere), and writes what it read into a RocksDB at ``STATE_DIR/history``
through processor/history/writer.py. The next offset of each partition is stored in the same
RocksDB, in the same atomic batch as the records it covers: after a restart (or a crash) the
reader resumes exactly there, and nothing is counted twice. A fresh state directory reads both
topics from their beginning (what the topics' retention still holds).

Every worker indexes everything (not only the partitions it owns): history, audit and as-of
explains answer locally, with no gather across workers, no gap after a rebalance and no 503
when a peer is away. The cost, storage and reading times the number of workers, is measured in
docs/performance.md ("History index").

Wiring: ``attach(app, settings)`` (one line in the worker) starts it with the app and stops it
on shutdown; ``HistoryIndex.reads`` is what the HTTP layer reads (processor/history/reads.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from processor.catalog.entry import CatalogEntry
from processor.config import Settings
from processor.contract.exceptions import ContractError
from processor.history import keys as K
from processor.history.overlay import Overlay
from processor.history.reads import HistoryReads
from processor.history.settings import HistorySettings
from processor.history.writer import Writer

log = logging.getLogger("processor.history")
BATCH = 2000  # records per poll, written in one atomic batch with their positions
EXPIRE_BUDGET = 5000  # expired changes dropped per batch (more follow in the next rounds)
# After a batch, rest this many times as long as it took: a burst (a backfill's changes, a fresh
# worker reading the topic) then uses at most a quarter of a core, and the worker's event loop,
# which shares the interpreter (and its lock) with this thread, is slowed little; the index lags
# by seconds meanwhile (docs/performance.md "9. History index": 1.0 cost a backfill ~30%, 3.0 ~11%).
REST_RATIO = 3.0


def now_ms() -> int:
    return int(time.time() * 1000)


class HistoryIndex:
    def __init__(self, settings: Settings, hs: HistorySettings) -> None:
        self.s = settings
        self.hs = hs
        self.path = settings.state_dir / "history"
        self._db: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lag: int | None = None
        self.read = 0  # records consumed since this process started (a restart resumes: only new ones)
        self.indexed = 0  # changes and catalog entries written (duplicates not counted)
        self.undecodable = 0
        self.reads = HistoryReads(lambda: self._db, hs.retention, self.status)

    def status(self) -> dict[str, Any]:
        return {"lag": self._lag, "open": self._db is not None, "read": self.read}

    # ----------------------------------------------------------- life cycle
    def open(self) -> None:
        from rocksdict import Options, Rdict

        self.path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self.path), Options(raw_mode=True))

    def start(self) -> None:
        if self._db is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="history-index", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        db, self._db = self._db, None  # new reads answer 503 from here on
        if db is not None:
            db.flush()  # not closed: an API read may still hold it; the process exit closes it

    # ----------------------------------------------------------- the loop
    def _consumer(self) -> Any:
        from confluent_kafka import Consumer

        from processor.kafka_security import librdkafka_config
        from processor.librdkafka import kafka_config

        return Consumer(kafka_config({
            **librdkafka_config(self.s.kafka_security),
            "bootstrap.servers": self.s.bootstrap_servers,
            "group.id": f"{self.s.app_id}-history-unused",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": self.hs.fetch_max_wait_ms,
            "enable.partition.eof": False,
        }))

    def _assign(self, consumer: Any) -> list[Any]:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        t = self.s.topics
        tps = []
        for topic in (t.membership_changes, t.catalog):
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None or not meta.partitions:
                raise RuntimeError(f"topic {topic} is not available: {meta.error}")
            for p in sorted(meta.partitions):
                raw = self._db.get(K.position_key(topic, p))
                tps.append(TopicPartition(topic, p, int.from_bytes(raw, "big") if raw else OFFSET_BEGINNING))
        consumer.assign(tps)
        return tps

    def _run(self) -> None:
        from processor.wire import WireFormat

        decode = WireFormat.from_settings(self.s).decode_membership_change
        consumer = None
        last_sweep = 0.0
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._consumer()
                    tps = self._assign(consumer)
                msgs = consumer.consume(BATCH, 0.5)
                if self._db is None:
                    break
                started = time.monotonic()
                due = started - last_sweep >= self.hs.sweep_interval_s
                self._index(msgs, decode, due)
                if due:
                    last_sweep = time.monotonic()
                self._lag = self._measure_lag(consumer, tps)
                if msgs:
                    self._stop.wait(min(1.0, (time.monotonic() - started) * REST_RATIO))
            except Exception:  # noqa: BLE001 - the broker or a record: log, wait, resume from the stored positions
                log.exception("history index: reading failed; resuming from the stored positions")
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:  # noqa: BLE001
                        pass
                consumer = None
                self._stop.wait(2.0)
        if consumer is not None:
            consumer.close()

    def _index(self, msgs: list[Any], decode: Any, sweep: bool) -> None:
        from rocksdict import WriteBatch

        overlay = Overlay(self._db)
        w = Writer(overlay, self.hs.retention)
        now = now_ms()
        changes_topic = self.s.topics.membership_changes
        positions: dict[tuple[str, int], int] = {}
        self.read += len(msgs)
        for msg in msgs:
            if msg.error():
                raise RuntimeError(str(msg.error()))
            topic, value = msg.topic(), msg.value()
            positions[(topic, msg.partition())] = msg.offset() + 1
            if value is None:
                continue
            try:
                if topic == changes_topic:
                    self.indexed += w.add_change(decode(value), now)
                else:
                    self.indexed += w.add_catalog(msg.offset(), CatalogEntry.decode(value), now)
            except (ContractError, ValueError, KeyError, TypeError):  # not ours to fix: counted, skipped
                self.undecodable += 1
                log.warning("history index: %s[%d]@%d is not decodable; skipped", topic, msg.partition(),
                            msg.offset())
        w.expire_changes(now, EXPIRE_BUDGET)
        if sweep:
            w.expire_aggregates(now)
        if not len(overlay) and not positions:
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in overlay.ops():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        for (topic, partition), nxt in positions.items():
            batch.put(K.position_key(topic, partition), nxt.to_bytes(8, "big"))
        self._db.write(batch)

    def _measure_lag(self, consumer: Any, tps: list[Any]) -> int | None:
        total = 0
        for tp in tps:
            try:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except Exception:  # noqa: BLE001 - not fetched yet
                return None
            if high < 0:
                return None
            raw = self._db.get(K.position_key(tp.topic, tp.partition)) if self._db is not None else None
            total += max(0, high - (int.from_bytes(raw, "big") if raw else 0))
        return total


def attach(app: Any, settings: Settings) -> HistoryIndex | None:
    """Run the history index with the Faust ``app`` (started with it, stopped on shutdown); None
    with HISTORY_ENABLED=0."""
    hs = HistorySettings.from_env()
    if not hs.enabled:
        return None
    index = HistoryIndex(settings, hs)

    @app.task
    async def start_history_index() -> None:
        await asyncio.to_thread(index.start)

    @app.on_before_shutdown.connect
    async def stop_history_index(app: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(index.stop)

    return index
