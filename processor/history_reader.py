"""Edge: index the membership-changes topic and the catalog log into this worker's history index.

The indexer (:class:`HistoryIndex`) reads every partition of
``segment-automation.membership-changes.v1`` and the catalog log's single partition with a
group-less librdkafka consumer (manual assignment, no offsets committed anywhere), and writes
what it read into a RocksDB at ``STATE_DIR/history`` through processor/history/writer.py. The
next offset of each partition is stored in the same RocksDB, in the same atomic batch as the
records it covers: after a restart (or a crash) it resumes exactly there, and nothing is counted
twice. A fresh state directory reads both topics from their beginning (what their retention
still holds).

It runs as a **child process of the worker, at the lowest CPU priority** (``nice 19``): indexing
is Python work, and on a thread of the worker it shared the interpreter lock and the CPU with
the worker's event loop (a 40,000-change backfill took ~50% longer; docs/performance.md "12.
History index"). The worker opens the same RocksDB as a read-only *secondary* instance
(:class:`HistoryView`), catching up with the indexer's writes before a read, and restarts the
indexer if it exits. The child stops with its worker: SIGTERM on shutdown; when the worker is
killed, the parent-death signal (or a parent check) makes it leave as the worker did, without
closing its broker connection gracefully.

Every worker indexes everything (not only the partitions it owns): history, audit and as-of
explains answer locally, with no gather across workers, no gap after a rebalance and no 503
when a peer is away; docs/api.md "History and audit" says why, docs/performance.md what it costs.

Wiring: ``attach(app, settings)`` (one line in the worker) starts the indexer with the app and
stops it on shutdown; ``.reads`` of what it returns is what the HTTP layer reads
(processor/history/reads.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from processor.catalog.entry import CatalogEntry, decode_entry
from processor.config import Settings
from processor.contract.exceptions import ContractError
from processor.history import keys as K
from processor.history import records
from processor.history.overlay import Overlay
from processor.history.reads import HistoryReads
from processor.history.settings import HistorySettings
from processor.history.writer import Writer

log = logging.getLogger("processor.history")
BATCH = 2000  # records per poll, written in one atomic batch with their positions
EXPIRE_BUDGET = 5000  # expired changes dropped per batch (more follow in the next rounds)
CATCH_UP_S = 0.05  # a read sees the indexer's writes of up to this long ago (plus the indexer's own lag)


def now_ms() -> int:
    return int(time.time() * 1000)


class HistoryIndex:
    """The indexer: the only writer of the index (in the child process)."""

    def __init__(self, settings: Settings, hs: HistorySettings) -> None:
        self.s = settings
        self.hs = hs
        self.path = settings.state_dir / "history"
        self._db: Any = None
        self._stop = threading.Event()
        self.orphaned = False  # the worker died: leave without a goodbye to the broker, as it did
        self._lag: int | None = None
        self.read = 0  # records consumed since this process started (a restart resumes: only new ones)
        self.indexed = 0  # changes and catalog entries written (duplicates not counted)
        self.undecodable = 0
        self.reads = HistoryReads(lambda: self._db, hs.retention, self.status)

    def status(self) -> dict[str, Any]:
        return {"lag": self._lag, "open": self._db is not None, "read": self.read, "skipped": self.undecodable}

    def open(self) -> None:
        from rocksdict import Options, Rdict

        self.path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self.path), Options(raw_mode=True))

    def stop(self) -> None:
        self._stop.set()

    # ----------------------------------------------------------- the loop
    def _consumer(self) -> Any:
        from processor.runtime import clients

        return clients.new_consumer({
            **clients.base_config(self.s.bootstrap_servers),
            "group.id": f"{self.s.app_id}-history-unused",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": self.hs.fetch_max_wait_ms,
            "enable.partition.eof": False,
        }, self.s.kafka_security)

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
        if self._db.get(K.COMPLETE) is None:  # a fresh index: will it see every change ever written?
            lows = [consumer.get_watermark_offsets(tp, timeout=10)[0] for tp in tps
                    if tp.topic == t.membership_changes]
            fresh = all(self._db.get(K.position_key(tp.topic, tp.partition)) is None for tp in tps)
            self._db.put(K.COMPLETE, b"1" if fresh and all(low == 0 for low in lows) else b"0")
        consumer.assign(tps)
        return tps

    def run(self, alive: Any = lambda: True) -> None:
        """Index until stopped (or ``alive()`` turns false); broker trouble is retried."""
        from processor.wire import WireFormat

        decode = WireFormat.from_settings(self.s).decode_membership_change
        consumer = None
        last_sweep = 0.0
        reported: tuple[Any, ...] = ()
        while not self._stop.is_set() and alive():
            try:
                if consumer is None:
                    consumer = self._consumer()
                    tps = self._assign(consumer)
                msgs = consumer.consume(BATCH, 0.5)
                due = time.monotonic() - last_sweep >= self.hs.sweep_interval_s
                self._lag = self._measure_lag(consumer, tps, msgs)
                if msgs or due or (self._lag, self.read) != reported:
                    self._index(msgs, decode, due)
                    reported = (self._lag, self.read)
                if due:
                    last_sweep = time.monotonic()
            except Exception:  # noqa: BLE001 - the broker or a record: log, wait, resume from the stored positions
                log.exception("history index: reading failed; resuming from the stored positions")
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:  # noqa: BLE001
                        pass
                consumer = None
                self._stop.wait(2.0)
        if consumer is not None and not self.orphaned:
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
                    entry = decode_entry(value)
                    if isinstance(entry, CatalogEntry):  # a partition's progress report is not history
                        self.indexed += w.add_catalog(msg.offset(), entry, now)
            except (ContractError, ValueError, KeyError, TypeError):  # not ours to fix: counted, skipped
                self.undecodable += 1
                log.warning("history index: %s[%d]@%d is not decodable; skipped", topic, msg.partition(),
                            msg.offset())
        w.expire_changes(now, EXPIRE_BUDGET)
        if sweep:
            w.expire_aggregates(now)
        batch = WriteBatch(raw_mode=True)
        for key, value in overlay.ops():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        for (topic, partition), nxt in positions.items():
            batch.put(K.position_key(topic, partition), nxt.to_bytes(8, "big"))
        batch.put(K.STATUS, records.encode({"lag": self._lag, "read": self.read, "skipped": self.undecodable,
                                             "pid": os.getpid()}))
        self._db.write(batch)

    def _measure_lag(self, consumer: Any, tps: list[Any], msgs: list[Any]) -> int | None:
        """Records of the topics not yet indexed (after ``msgs``), from the last fetched high watermarks."""
        last = {(m.topic(), m.partition()): m.offset() + 1 for m in msgs if not m.error()}
        total = 0
        for tp in tps:
            try:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except Exception:  # noqa: BLE001 - not fetched yet
                return None
            if high < 0:
                return None
            raw = self._db.get(K.position_key(tp.topic, tp.partition))
            done = last.get((tp.topic, tp.partition), int.from_bytes(raw, "big") if raw else 0)
            total += max(0, high - done)
        return total


# ------------------------------------------------------------------ the child process
def _die_with_parent() -> None:
    """Linux: SIGUSR1 this process when its parent (the worker) dies, even by kill -9."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGUSR1)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - elsewhere the loop's parent check stops it
        pass


def main() -> None:
    """``python -m processor.history_reader``: the indexer, started by its worker."""
    parent = int(os.environ.get("HISTORY_PARENT_PID", "0") or 0)
    _die_with_parent()
    try:
        os.nice(19)  # only the CPU the worker leaves
    except OSError:
        pass
    if os.environ.get("LOG_FORMAT", "json").lower() == "json":
        from processor.logs import json_handler

        logging.basicConfig(level=logging.INFO, handlers=[json_handler()])
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    index = HistoryIndex(Settings.from_env(), HistorySettings.from_env())
    signal.signal(signal.SIGTERM, lambda *_: index.stop())
    signal.signal(signal.SIGINT, lambda *_: index.stop())

    def orphaned(*_: Any) -> None:
        index.orphaned = True
        index.stop()

    signal.signal(signal.SIGUSR1, orphaned)  # the worker is gone (see _die_with_parent)

    def alive() -> bool:
        if parent and os.getppid() != parent:
            orphaned()
        return not index.orphaned

    while index._db is None and not index._stop.is_set() and alive():
        try:
            index.open()
        except Exception as exc:  # noqa: BLE001 - the previous indexer may still hold the lock
            log.warning("history index: cannot open %s yet (%s); retrying", index.path, exc)
            index._stop.wait(1.0)
    if index._db is None:
        return
    log.info("history index: indexing into %s", index.path)
    index.run(alive)
    index._db.flush()
    index._db.close()


# ------------------------------------------------------------------ the worker's side
class HistoryView:
    """The worker's read-only view of the index (a RocksDB secondary instance), and the indexer
    child it runs."""

    def __init__(self, settings: Settings, hs: HistorySettings) -> None:
        self.s = settings
        self.hs = hs
        self.path = settings.state_dir / "history"
        self.secondary = settings.state_dir / "history-reader"
        self._db: Any = None
        self._caught_up = 0.0
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self.reads = HistoryReads(self.handle, hs.retention, self.status)

    def handle(self) -> Any:
        """The index as of now (None until the indexer created it)."""
        if self._db is None:
            if not (self.path / "CURRENT").exists():
                return None
            from rocksdict import AccessType, Options, Rdict

            self.secondary.mkdir(parents=True, exist_ok=True)
            try:
                self._db = Rdict(str(self.path), Options(raw_mode=True),
                                 access_type=AccessType.secondary(str(self.secondary)))
            except Exception:  # noqa: BLE001 - created but not complete yet: next read
                return None
        t = time.monotonic()
        if t - self._caught_up >= CATCH_UP_S:
            self._db.try_catch_up_with_primary()
            self._caught_up = t
        return self._db

    def status(self) -> dict[str, Any]:
        db = self.handle()
        raw = db.get(K.STATUS) if db is not None else None
        st = records.decode(raw) if raw else {}
        return {"lag": st.get("lag"), "read": st.get("read", 0), "skipped": st.get("skipped", 0),
                "open": db is not None,
                "complete": db is not None and db.get(K.COMPLETE) == b"1",
                "indexer": self._child is not None and self._child.poll() is None}

    # ----------------------------------------------------------- the child
    def start(self) -> None:
        s, t = self.s, self.s.topics
        env = dict(os.environ, HISTORY_PARENT_PID=str(os.getpid()), KAFKA_BOOTSTRAP_SERVERS=s.bootstrap_servers,
                   STATE_DIR=str(s.state_dir), APP_ID=s.app_id, TOPIC_MEMBERSHIP_CHANGES=t.membership_changes,
                   TOPIC_CATALOG=t.catalog)
        self._child = subprocess.Popen([sys.executable, "-m", "processor.history_reader"], env=env)

    def supervise(self) -> None:
        """Start the indexer again if it exited (a crash is logged by the child)."""
        if self._child is not None and self._child.poll() is not None and not self._stopping:
            log.error("history indexer exited with %s; starting it again", self._child.returncode)
            self.start()

    def stop(self) -> None:
        self._stopping = True
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def attach(app: Any, settings: Settings) -> HistoryView | None:
    """Run the history indexer with the Faust ``app`` (started with it, supervised, stopped on
    shutdown); None with HISTORY_ENABLED=0."""
    hs = HistorySettings.from_env()
    if not hs.enabled:
        return None
    view = HistoryView(settings, hs)

    @app.task
    async def start_history_indexer() -> None:
        view.start()

    @app.timer(interval=5.0)
    async def supervise_history_indexer() -> None:
        view.supervise()

    @app.on_before_shutdown.connect
    async def stop_history_indexer(app: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(view.stop)

    return view


if __name__ == "__main__":
    main()
