"""Edge: the Faust application (the only module importing faust).

Two agents:

* ``users`` consumes user events and the internal control topic (same
  partition count, so Faust assigns partition p of both to one worker) and
  owns the ``users`` table (RocksDB via rocksdict, changelogged). A control
  message tells partition p to backfill one site for a command.
* ``commands`` consumes automation commands: decide against the caught-up
  catalog, append the decision to the catalog log, wait until it is folded,
  fan one control message out to every partition, publish the result.

Everything is at-least-once: membership changes leave through an outbox
(processor/outbox.py) that flushes the table's changelog before releasing
them, and is drained before every offset commit; the pure engine re-emits
identical changes on replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any, AsyncIterator

import faust
from faust.types import TP, Message

from processor import faust_fixes

faust_fixes.apply()  # seek-before-resume on recovery: see processor/faust_fixes.py

from processor.catalog.commands import Decision, decide
from processor.catalog.entry import CatalogEntry
from processor.catalog.model import CommandRecord
from processor.catalog.registry import CatalogRegistry, record_of
from processor.catalog_log import CatalogLog
from processor.config import Settings
from processor.contract.codec import (
    decode_command,
    decode_key,
    decode_user_event,
    encode_command_result,
    encode_membership_change,
)
from processor.contract.exceptions import ContractError
from processor.contract.models import Actor, Command, CommandResult, DeadLetter, MembershipChange
from processor.changelog import ChangelogProducer, changelog_config
from processor.changelog_writer import ChangelogWriter
from processor.dead_letters import DeadLetterProducer, DeadLetters, FaustPartitions
from processor.outbox import Outbox
from processor.output_producer import OutputProducer
from processor.membership.engine import (
    Cause,
    Outcome,
    ahead_of,
    apply_backfill,
    apply_tick,
    apply_user_event,
    current_changes,
    reissue_tick,
)
from processor.state.keys import (
    FIRED,
    TIMER,
    USER,
    fired_key,
    parse_fired_key,
    member_key,
    parse_timer_key,
    timer_key,
    timer_upper_bound,
    user_key,
    user_prefix,
)
from processor.state.members import member_entry, restored_writes
from processor.state.user_state import UserState, decode_state, encode_state

log = logging.getLogger("processor")
RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
BACKFILL_CHUNK = 500
TICK_SECONDS = 5.0  # how often each worker checks its partitions for due time-relative re-evaluations


def now_ms() -> int:
    return int(time.time() * 1000)


def unprocessed(highwater: int, done: int) -> int:
    """Records of a partition this worker has not processed: its high watermark (the next offset
    to be written) minus the next offset to process (``done``: the last one processed, or the
    committed offset - 1 before the first). Read from what the handlers finished, not from the
    consumer's position, so a partition whose records were fetched but never processed (assigned
    but not consuming) shows lag, and the SegmentConsumerStalled alert fires."""
    return max(0, highwater - (done + 1))


class Processor:
    """Holds the Faust app, its topics, table and the catalog; agents call its handlers."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        st = settings.session_timeout_s
        self.app = faust.App(
            settings.app_id,
            broker=[f"kafka://{b.strip()}" for b in settings.bootstrap_servers.split(",")],
            store="rocksdb://",
            datadir=str(settings.state_dir),
            web_port=settings.web_port,
            web_bind=settings.web_host,
            web_host=settings.canonical_host,
            canonical_url=f"http://{settings.canonical_host}:{settings.web_port}",
            processing_guarantee="at_least_once",
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor or 1,  # the worker passes the one topics.py chose
            topic_allow_declare=False,
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=st,
            broker_heartbeat_interval=max(1.0, st / 6),
            broker_request_timeout=max(30.0, st + 5),
            broker_rebalance_timeout=max(60.0, st * 2),
            broker_commit_interval=1.0,
            producer_acks=-1,
            producer_linger=settings.faust_producer_linger_ms / 1000,
            table_standby_replicas=0,
            stream_wait_empty=True,
            # After kill -9 the local RocksDB can be ahead of the changelog; the engine is
            # replay-safe (it re-emits, never skips), so keep the local state and go on.
            recovery_consistency_check=False,
            # None of Faust's own web views (/table/ reads any table key without a token); the
            # blueprints are also removed in _install_http, see processor/api/routes.py.
            web_router_enabled=False,
            web_tables_enabled=False,
            web_stats_enabled=False,
            web_graph_enabled=False,
            web_metrics_enabled=False,
            **({"producer_max_batch_size": 1} if "tansu" in settings.broker_quirks else {}),
        )
        wait_ms = settings.fetch_max_wait_ms
        if wait_ms is None and "tansu" in settings.broker_quirks:
            wait_ms = 50
        faust_fixes.set_fetch_max_wait_ms(wait_ms)
        t = settings.topics
        self.registry = CatalogRegistry(settings.command_window)
        self.catalog = CatalogLog(settings.bootstrap_servers, t.catalog, self.registry)
        self.users_in = self.app.topic(t.user_events, t.control, **RAW)
        self.commands_in = self.app.topic(t.commands, **RAW)
        self.changes_out = self.app.topic(t.membership_changes, **RAW)
        self.results_out = self.app.topic(t.command_results, **RAW)
        self.dlq_out = self.app.topic(t.dead_letters, **RAW)
        self.catalog_out = self.app.topic(t.catalog, **RAW)
        self.control_out = self.app.topic(t.control, **RAW)
        self.users = self.app.Table(
            "users",
            partitions=settings.partitions,
            key_type=bytes,  # bytes => Faust's "raw" serializer for store and changelog
            value_type=bytes,
        )
        self._derive_members_on_restore()
        self.commands_out = self.app.topic(t.commands, **RAW)
        self.counters: dict[str, int] = {}
        self.log = log
        from processor.metrics import Metrics

        self.metrics = Metrics()
        self.metrics.watch_gc()
        self.outputs = OutputProducer(settings.bootstrap_servers, client_id=f"{settings.app_id}-changes",
                                      linger_ms=settings.output_linger_ms)
        self.outbox = Outbox(self._flush_producer, self._send_change, on_drain=self.metrics.observe_drain,
                             failures=lambda: self.outputs.failed, failure_detail=self.outputs.last_error)
        # Called by faust_fixes' commit hook, in order, before any input offset is committed: the
        # outbox releases its changes (flush, send, flush), then one more flush acknowledges table
        # writes that carried no change (a profile update that moved no membership; the outbox
        # flushes only when it holds something), so a committed input offset never points past a
        # state write the changelog may not hold.
        self.app.before_commit_hooks = [self.outbox.drain, self._flush_producer]
        # Per assignment: highest offset processed per (topic, partition), and the users whose
        # recorded changes were re-emitted because their state was ahead of this owner (see
        # processor.membership.engine.ahead_of).
        self._done: dict[tuple[str, int], int] = {}
        self._reconfirmed: set[bytes] = set()
        self._fault_armed = False  # FAULT_EXIT_BEFORE_SEND (crash tests only)
        # The users table's changelog (processor/changelog.py, produced by the processor, not
        # through Faust's table) and, per partition, the offset last written to its RocksDB as
        # Faust's "persisted offset" (where its recovery resumes).
        self.changelog = ChangelogProducer(settings.changelog_topic, changelog_config(
            settings.bootstrap_servers, f"{settings.app_id}-changelog",
            single_record_batches="tansu" in settings.broker_quirks))
        self.changelog.on_error = self._changelog_failed
        # A backfill's table writes go through Faust's producer instead (processor/changelog_writer.py,
        # faster there on tansu); bulk_writes keeps the two from interleaving.
        self.bulk_changelog = ChangelogWriter(self._send_changelog)
        self.bulk_changelog.on_error = self._changelog_failed
        self._bulk = False
        self._changelog_persisted: dict[int, int] = {}
        self._init_dead_letters()
        from processor.history_reader import attach as attach_history  # history and audit index (issue 21)

        self.history = attach_history(self.app, settings)
        self._wire()
        self._install_http()

    def _derive_members_on_restore(self) -> None:
        """Members-tab entries are not changelogged: when Faust restores user states into a
        partition (takeover, standby, fresh state dir), derive them from each state's change."""
        store = self.users.data
        restore = store.apply_changelog_batch

        def apply_changelog_batch(batch: Any, to_key: Any, to_value: Any) -> None:
            events = list(batch)
            latest: dict[tuple[int, bytes], bytes | None] = {}
            writes: dict[int, list[tuple[bytes, bytes | None]]] = {}
            for event in events:
                msg = event.message
                if not msg.key or not msg.key.startswith(USER):
                    continue
                slot = (msg.partition, msg.key)
                old = latest[slot] if slot in latest else store._db_for_partition(msg.partition).get(msg.key)
                latest[slot] = msg.value
                writes.setdefault(msg.partition, []).extend(restored_writes(msg.key, old, msg.value))
            restore(events, to_key, to_value)
            for partition, ops in writes.items():
                if ops:
                    faust_fixes.write_local(store._db_for_partition(partition), ops)

        store.apply_changelog_batch = apply_changelog_batch

    def _install_http(self) -> None:
        """Faust's own views off (its blueprints: /table/ reads any table key without a token),
        then every route of processor/http in one call, over a read model of this worker."""
        from faust.web.base import BlueprintManager

        from processor import http
        from processor.api.auth import AuthConfig
        from processor.read_model import ProcessorReadModel

        self.auth = AuthConfig.from_settings(self.s)  # COMMANDS_REQUIRE_TOKEN verifies with it
        self.app.web.blueprints = BlueprintManager()
        http.install(self.app.web.web_app, ProcessorReadModel(self), self.s)

    def readiness(self) -> tuple[bool, bool]:
        """(catalog loaded, table recovery complete): /readyz and the ``segment_ready`` gauge."""
        catalog = self.catalog.ready.is_set()
        try:
            tables = self.app.tables.recovery.completed.is_set() and not self.app.in_recovery
        except AttributeError:
            tables = False
        return catalog, tables

    def _update_gauges(self) -> None:
        self.metrics.catalog_offset.set(self.registry.applied_offset)
        self.metrics.ready.set(1 if all(self.readiness()) else 0)
        try:
            consumer = self.app.consumer
            self.metrics.lag.clear()  # only the partitions assigned now: a revoked one's last value would stay
            for tp in self.app.assignor.assigned_actives():
                hw = consumer.highwater(tp)
                if hw is not None:
                    lag = unprocessed(hw, self._done_offset(tp.topic, tp.partition))
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
        except Exception:  # noqa: BLE001 - metrics must never fail a scrape
            pass

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # ------------------------------------------------------------------ wiring
    def _wire(self) -> None:
        app = self.app

        @app.task
        async def start_catalog() -> None:
            await self.catalog.start()

        @app.on_before_shutdown.connect
        async def stop_catalog(app: Any, **kwargs: Any) -> None:
            await self.catalog.stop()

        @app.task
        async def drain_outbox() -> None:
            await self.outbox.run()

        @app.task
        async def warm_clients() -> None:
            # librdkafka's clients connect lazily; the idempotent changelog client's first record
            # waited ~500 ms for its producer id, holding the first events' changes (processor/changelog.py)
            await asyncio.gather(self.changelog.warm(), self.outputs.warm(self.s.topics.membership_changes))

        @app.on_partitions_revoked.connect
        async def drain_on_revoke(app: Any, revoked: Any, **kwargs: Any) -> None:
            await self.outbox.drain()  # the next owner should not race this worker's late sends
            self._reset_positions()

        @app.on_partitions_assigned.connect
        async def reset_on_assign(app: Any, assigned: Any, **kwargs: Any) -> None:
            self._reset_positions()

        @app.agent(self.users_in, name="users")
        async def users_agent(stream: Any) -> None:
            await self.catalog.ready.wait()
            async for event in stream.events():
                await self.guard(event.message, self.on_users_message)

        @app.agent(self.commands_in, name="commands")
        async def commands_agent(stream: Any) -> None:
            await self.catalog.ready.wait()
            async for event in stream.events():
                await self.guard(event.message, self.on_command)

        @app.timer(interval=TICK_SECONDS)
        async def tick_due_timers() -> None:
            await self.send_ticks()

    async def guard(self, msg: Message, handler: Any) -> None:
        """Never let one message kill the worker: unexpected errors dead-letter it."""
        if self.dead_letters.holds(msg):
            return  # its partition waits for an unsent dead letter (processor/dead_letters.py)
        try:
            try:
                await handler(msg)
            finally:
                self._done[(msg.topic, msg.partition)] = msg.offset
        except asyncio.CancelledError:
            raise
        except ContractError as err:
            await self.dead_letter(msg, err.code, f"{err.path}: {err.message}")
        except Exception as exc:  # noqa: BLE001 - a bug must not stop every other user's changes
            log.exception("processing failed for %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            await self.dead_letter(msg, "PROCESSING_ERROR", f"{type(exc).__name__}: {exc}"[:1000])

    async def dead_letter(self, msg: Message, code: str, error: str) -> None:
        self.count(f"dead_letters.{code}")
        self.metrics.dead_letters.labels(code).inc()
        log.warning("dead-letter %s[%d]@%d %s: %s", msg.topic, msg.partition, msg.offset, code, error,
                    extra={"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                           "error_code": code})
        dl = DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, code, error, now_ms())
        await self.dead_letters.send(msg, dl)  # bounded; a failed send pauses msg's partition, never raises

    def _init_dead_letters(self) -> None:
        """The dead-letter sender (processor/dead_letters.py); a rebalance or shutdown drops its
        paused partitions (their next owner re-reads them from the committed offset)."""
        s = self.s
        producer = DeadLetterProducer(s.bootstrap_servers, f"{s.app_id}-dead-letters", s.dead_letter_max_bytes,
                                      s.dead_letter_timeout_ms)
        self.dead_letters = DeadLetters(s.topics.dead_letters, producer, FaustPartitions(self.app), self.metrics,
                                        s.dead_letter_max_bytes, s.dead_letter_retry_max_s)

        @self.app.on_partitions_revoked.connect
        async def drop_dead_letter_blocks(app: Any, revoked: Any, **kwargs: Any) -> None:
            self.dead_letters.on_revoke()

        @self.app.on_before_shutdown.connect
        async def stop_dead_letters(app: Any, **kwargs: Any) -> None:
            self.dead_letters.stop()

    def emit(self, change: MembershipChange, owner: bytes) -> None:
        """Count a new change and queue it (it leaves once the state write behind it is flushed)."""
        self.count(f"changes.{change.change}")
        self.metrics.changes.labels(change.change, change.cause_kind).inc()
        fault = self.s.fault_exit_before_send
        if fault and fault in (change.cause_kind, f"{change.cause_kind}@{change.site_id}"):
            self._fault_armed = True
        self._queue(change, owner)

    def _queue(self, change: MembershipChange, owner: bytes) -> None:
        self.outbox.put(f"{change.site_id}:{change.user_id}".encode(), encode_membership_change(change), owner)

    def _reset_positions(self) -> None:
        """A new assignment: processed offsets and re-emitted users start over."""
        self._done.clear()
        self._reconfirmed.clear()

    def _done_offset(self, topic: str, partition: int) -> int:
        """Highest offset of ``topic[partition]`` this owner has processed (committed - 1 before the first)."""
        done = self._done.get((topic, partition))
        if done is not None:
            return done
        try:
            committed = self.app.consumer._committed_offset.get(TP(topic, partition))
        except Exception:  # noqa: BLE001 - consumer not started: treat everything stored as ahead
            committed = None
        return committed - 1 if committed else -1

    def positions(self, msg: Message) -> tuple[int, int]:
        """(user events done, control done) on ``msg``'s partition, before ``msg``."""
        t = self.s.topics
        return self._done_offset(t.user_events, msg.partition), self._done_offset(t.control, msg.partition)

    def reconfirm(self, key: bytes, st: UserState, msg: Message, positions: tuple[int, int] | None = None) -> None:
        """Re-emit a user's recorded changes once if its state is ahead of what this owner processed.

        Runs before ``msg`` may supersede those changes (see ``ahead_of``); the re-emitted changes
        are byte-identical, so a consumer that already has them sees duplicates only. The message
        itself counts as processed: a replayed user event only re-issues its own changes, and a
        control message that already changed this user is a re-run.
        """
        if key in self._reconfirmed:
            return
        t = self.s.topics
        user_done, control_done = positions if positions is not None else self.positions(msg)
        if msg.topic == t.user_events:
            if msg.offset <= st.last_offset:
                return  # REPLAYED or an old duplicate: nothing is superseded
            user_done = max(user_done, msg.offset)
        else:
            control_done = max(control_done, msg.offset)
        if not ahead_of(st, user_done, control_done):
            return
        self._reconfirmed.add(key)
        again = current_changes(st)
        self.count("changes.reconfirmed", len(again))
        for change in again:
            self._queue(change, key)

    async def _flush_producer(self) -> None:
        await self.changelog.flush()  # the users changelog; raises after a failed record: the outbox keeps its changes
        await self.bulk_changelog.flush()  # the same, written by a backfill
        await faust_fixes.durable_flush(self.app.producer)  # Faust's own sends
        await self.outputs.flush()  # membership changes
        self._persist_offsets()

    async def _send_change(self, key: bytes, value: bytes) -> None:
        # Through the batching output client (processor/output_producer.py: librdkafka, same
        # partitioner and acks as Faust's transport, without its one-record batches and per-record
        # futures); the outbox's closing flush waits for the acknowledgements and compares the
        # client's failure count around the batch.
        if self._fault_armed:
            log.critical("FAULT_EXIT_BEFORE_SEND=%s: exiting before the send", self.s.fault_exit_before_send)
            os._exit(137)  # like kill -9: no flush, no commit, no revoke
        await self.outputs.send(self.s.topics.membership_changes, key, value)

    # ------------------------------------------------------------------ users
    async def on_users_message(self, msg: Message) -> None:
        if msg.topic == self.s.topics.control:
            await self.on_control(msg)
            return
        started = time.perf_counter()
        ev = decode_user_event(msg.key, msg.value)
        site = self.registry.site(ev.site_id)
        key = user_key(ev.site_id, ev.user_id)
        await self.outbox.settle(key)  # this user's earlier changes leave before its state moves on
        raw = self.users.get(key)
        st = decode_state(raw) if raw else None
        if st is not None:
            self.reconfirm(key, st, msg)
        out = apply_user_event(st, ev, msg.offset, site.active, now_ms())
        self.count(f"user_events.{out.status}")
        await self.commit_outcome(key, out, msg.partition)
        self.metrics.events.labels(ev.event_type, out.status).inc()
        self.metrics.evaluation.observe(time.perf_counter() - started)

    # ------------------------------------------------------------ table writes
    async def table_put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Write (``None``: delete) one key of the users table: the partition's RocksDB, then the
        record to the table's changelog through :class:`processor.changelog.ChangelogProducer`
        (not Faust's ``Table.__setitem__``, whose per-record path cost ~16% of the worker's CPU
        per event; see that module). Faust still owns the store and restores it from the
        changelog. Inside :meth:`bulk_writes` (a backfill) the record goes to
        :class:`processor.changelog_writer.ChangelogWriter` instead (see that module)."""
        db = self.users.data._db_for_partition(partition)
        if value is None:
            db.delete(key)
        else:
            db[key] = value
        if self._bulk:
            await self.bulk_changelog.put(partition, key, value)
        else:
            await self.changelog.put(partition, key, value)

    async def table_pop(self, partition: int, key: bytes) -> None:
        """Delete a key of the users table if it is there (no tombstone for a key never written)."""
        if self.users.data._db_for_partition(partition).get(key) is not None:
            await self.table_put(partition, key, None)

    @contextlib.asynccontextmanager
    async def bulk_writes(self) -> AsyncIterator[None]:
        """Table writes of one message through the backfill's writer. The two changelog clients
        never interleave records: the per-event client's records are acknowledged before the
        first of the writer's is produced, and the writer's before the next message (the users
        agent handles one message at a time), so every key's records keep the order of its
        writes."""
        await self.changelog.flush()
        self._bulk = True
        try:
            yield
        finally:
            self._bulk = False
            await self.bulk_changelog.flush()

    async def _send_changelog(self, partition: int, key: bytes, value: bytes | None) -> Any:
        return await self.app.producer.send(self.s.changelog_topic, key, value, partition=partition,
                                            timestamp=None, headers=None)

    def _changelog_failed(self, exc: BaseException) -> None:
        """The local store now holds a write its changelog does not: never release the changes
        behind it (every flush raises from now on) and stop like a crash; the next owner replays
        the uncommitted input and re-emits, the same state as after kill -9."""
        self.count("changelog.send_errors")
        log.critical("users changelog write failed: %r; stopping the worker", exc)
        asyncio.ensure_future(self.app.crash(exc))

    def _persist_offsets(self) -> None:
        """Record, in each open partition's RocksDB, the highest changelog offset acknowledged so
        far: Faust's recovery resumes reading the changelog after it. Lagging behind is safe
        (recovery re-applies records the store already holds, in order); it only costs replay."""
        store = self.users.data
        acked = dict(self.changelog.acked)
        for partition, offset in self.bulk_changelog.acked.items():  # the two never have records in flight together
            acked[partition] = max(offset, acked.get(partition, -1))
        for partition, offset in acked.items():
            if offset > self._changelog_persisted.get(partition, -1) and partition in store._dbs:
                store.set_persisted_offset(TP(self.s.changelog_topic, partition), offset)
                self._changelog_persisted[partition] = offset

    async def commit_outcome(self, key: bytes, out: Outcome, partition: int) -> None:
        """Write the state and its timer (changelogged) and the members-tab entries (local only,
        see processor/state/members.py), then queue the changes (the outbox releases them after
        the changelog holds these writes, and before the offset commit)."""
        if out.dirty:
            await self.table_put(partition, key, encode_state(out.state))
        if out.timer is not None:
            old, new = out.timer
            if new:  # the new timer before the old one goes: a crash between leaves both, never none
                await self.table_put(partition, timer_key(new, key), b"")
            if old:
                await self.table_pop(partition, timer_key(old, key))
        if out.changes:
            db = self.users.data._db_for_partition(partition)
            for change in out.changes:
                mkey = member_key(change.site_id, change.segment_id, change.user_id)
                if change.change == "ADDED":
                    db[mkey] = member_entry(change.emitted_at, change.matched_rule_ids, change.cause_kind)
                else:
                    db.delete(mkey)
                self.emit(change, key)
        if out.changes:
            await self.outbox.backpressure()

    async def on_control(self, msg: Message) -> None:
        try:
            ctl = json.loads(msg.value)
            if ctl.get("kind") == "tick":
                await self.on_tick(msg, int(ctl["at"]))
                return
            site_id, offset = ctl["site_id"], int(ctl["catalog_offset"])
            segments = [(s, m) for s, m in ctl["segments"]]
            cause = Cause(ctl["cause_kind"], ctl["command_id"], int(ctl["occurred_at"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ContractError("INVALID_CONTROL", f"bad control message: {exc}") from None
        await self.catalog.wait_for(offset)
        started = time.monotonic()
        db = self.users.data._db_for_partition(msg.partition)
        prefix = user_prefix(site_id)
        start = prefix
        seen = changed = 0
        positions = self.positions(msg)  # fixed while this message is processed
        async with self.bulk_writes():
            while True:
                chunk: list[tuple[bytes, bytes]] = []
                for k, v in db.items(from_key=start):
                    if not k.startswith(prefix) or len(chunk) >= BACKFILL_CHUNK:
                        break
                    chunk.append((k, v))
                if not chunk:
                    break
                active = self.registry.site(site_id).active
                for k, v in chunk:
                    if self.outbox.pending_for(k):
                        await self.outbox.settle(k)
                    st = decode_state(v)
                    self.reconfirm(k, st, msg, positions)
                    out = apply_backfill(st, active, segments, cause, now_ms(), msg.offset)
                    if out.dirty or out.timer is not None or out.changes:  # most users: nothing to write
                        changed += len(out.changes)
                        await self.commit_outcome(k, out, msg.partition)
                seen += len(chunk)
                if len(chunk) < BACKFILL_CHUNK:
                    break
                start = chunk[-1][0] + b"\x00"
                await asyncio.sleep(0)  # let heartbeats and other tasks run during long backfills
        self.count("backfill.users", seen)
        self.metrics.backfill_users.inc(seen)
        log.info(
            "backfill %s site=%s partition=%d users=%d changes=%d in %.3fs",
            ctl["command_id"], site_id, msg.partition, seen, changed, time.monotonic() - started,
            extra={"command_id": ctl["command_id"], "site_id": site_id, "partition": msg.partition,
                   "users": seen, "changes": changed},
        )

    # ------------------------------------------------------------------ timers
    def _due(self, partition: int, at: int) -> bool:
        db = self.users.data._db_for_partition(partition)
        for k in db.keys(from_key=TIMER):
            return k.startswith(TIMER) and k < timer_upper_bound(at)
        return False

    async def send_ticks(self) -> None:
        """For each owned partition with a timer due, queue a tick behind its pending events."""
        at = int(time.time())
        try:
            owned = {tp.partition for tp in self.app.assignor.assigned_actives()
                     if tp.topic == self.s.topics.user_events}
        except Exception:  # noqa: BLE001 - not assigned yet
            return
        for p in sorted(owned):
            if self._due(p, at):
                body = json.dumps({"kind": "tick", "at": at}).encode()
                await self.control_out.send(key=b"tick", value=body, partition=p)

    async def on_tick(self, msg: Message, at: int) -> None:
        db = self.users.data._db_for_partition(msg.partition)
        await self._refire(db, msg.partition, msg.offset)
        bound = timer_upper_bound(at)
        done = 0
        while True:
            keys = []
            for k in db.keys(from_key=TIMER):
                if not k.startswith(TIMER) or k >= bound or len(keys) >= BACKFILL_CHUNK:
                    break
                keys.append(k)
            if not keys:
                break
            for tk in keys:
                due, ukey = parse_timer_key(tk)
                await self.outbox.settle(ukey)
                raw = self.users.get(ukey)
                if raw:
                    st = decode_state(raw)
                    self.reconfirm(ukey, st, msg)
                    out = apply_tick(st, self.registry.site(st.site_id).active, due, now_ms(), msg.offset)
                    if out.status != "STALE":
                        done += 1
                        if out.changes:
                            await self.table_put(msg.partition, fired_key(msg.offset, ukey), due.to_bytes(8, "big"))
                        await self.commit_outcome(ukey, out, msg.partition)
                # Popped last: the changelog holds a prefix of these writes after a crash, and a
                # timer still there with the state moved on is a STALE tick whose 'fired' entry
                # re-issues the change; a timer gone with the state not yet written would be lost.
                await self.table_pop(msg.partition, tk)
            await asyncio.sleep(0)
        self.count("timers.fired", done)
        self.metrics.timers.inc(done)

    async def _refire(self, db: Any, partition: int, tick_offset: int) -> None:
        """Before a tick: re-issue what an earlier run of this very tick changed, drop older entries.

        A previous owner may have processed this tick, popped its timers and recorded the changes,
        then died before they left the outbox; the tick's replay no longer finds those timers.
        The re-issued changes are byte-identical (same cause ``time:{due}``), so a consumer that
        already got them sees duplicates only.
        """
        entries = []
        for k, v in db.items(from_key=FIRED):
            if not k.startswith(FIRED) or parse_fired_key(k)[0] > tick_offset:
                break  # past the log, or a later tick's entries: its own replay re-issues them
            entries.append((k, v))
        for k, v in entries:
            offset, ukey = parse_fired_key(k)
            if offset < tick_offset:
                await self.table_pop(partition, k)  # processed again or committed before this tick
                continue
            await self.outbox.settle(ukey)
            raw = self.users.get(ukey)
            if raw:
                again = reissue_tick(decode_state(raw), int.from_bytes(v, "big"))
                self.count("changes.refired", len(again))
                for change in again:
                    self._queue(change, ukey)

    # --------------------------------------------------------------- commands
    async def on_command(self, msg: Message) -> None:
        cmd = decode_command(msg.value)  # undecodable: no id to answer to, the guard dead-letters it
        try:
            await self._process_command(msg, cmd)
        except asyncio.CancelledError:
            raise
        except Exception:
            await self._settle_failed_command(msg, cmd)
            raise  # the guard logs it and dead-letters the original bytes

    async def _settle_failed_command(self, msg: Message, cmd: Any) -> None:
        """A command whose processing raised still gets a result (never PENDING forever).

        With no decision in the catalog log yet (``decide`` raised, or the log write failed), a
        REJECTED INTERNAL_ERROR decision is logged like any other: every worker folds the same
        record and a re-sent command_id answers identically. Then the result of whatever the
        log holds for the command (that one, or an earlier decision) is published. The message
        names no server path: the exception stays in the worker's log and the dead letter.
        """
        try:
            rec = self.registry.command(cmd.site_id, cmd.command_id)
            if rec is None:
                message = ("the worker hit an internal error while processing this command; nothing was "
                           f"changed. The operators have it as a dead letter of commands partition "
                           f"{msg.partition}, offset {msg.offset}")
                entry = CatalogEntry(cmd, "REJECTED", "INTERNAL_ERROR", message, now_ms(), msg.partition,
                                     msg.offset, None)
                md = await (await self.catalog_out.send(key=cmd.site_id.encode(), value=entry.encode()))
                await asyncio.wait_for(self.catalog.wait_for(md.offset), timeout=max(30.0, self.s.session_timeout_s))
                rec = self.registry.command(cmd.site_id, cmd.command_id) or record_of(entry, md.offset)
                self.count(f"commands.{rec.status}")
                self.metrics.commands.labels(rec.status, rec.code or "").inc()
            await self.publish_result(cmd.site_id, rec)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the broker is failing too: logged, and the message is dead-lettered
            log.exception("no result could be published for command %s after it failed", cmd.command_id)

    def _fault(self, stage: str, cmd: Any) -> None:
        """FAULT_COMMAND_RAISE=<stage>:<command_id prefix>[,...] (failure tests only, never in
        production): raise an unexpected error at ``stage`` (decide, fan_out) for matching commands."""
        for spec in (self.s.fault_command_raise or "").split(","):
            where, _, prefix = spec.partition(":")
            if where == stage and prefix and cmd.command_id.startswith(prefix):
                raise RuntimeError(f"injected fault at {stage} (FAULT_COMMAND_RAISE); see /srv/processor/{stage}.py")

    async def _process_command(self, msg: Message, cmd: Any) -> None:
        await self.catalog.catch_up()
        site = self.registry.site(cmd.site_id)
        rec = self.registry.command(cmd.site_id, cmd.command_id)
        if rec is not None:
            if (rec.source_partition, rec.source_offset) == (msg.partition, msg.offset):
                # The same message again (crash before commit): finish what it started.
                await self.fan_out(cmd.site_id, rec, cmd.command_id, cmd.issued_at)
            else:
                self.count("commands.duplicate")
            await self.publish_result(cmd.site_id, rec)
            return
        cmd, denied = self._verified_actor(cmd)
        self._fault("decide", cmd)
        decision = denied or decide(site, cmd, decode_key(msg.key))
        entry = CatalogEntry(
            cmd, decision.status, decision.code, decision.message, now_ms(),
            msg.partition, msg.offset, decision.backfill,
        )
        fut = await self.catalog_out.send(key=cmd.site_id.encode(), value=entry.encode())
        md = await fut
        await self.catalog.wait_for(md.offset)
        # (the entry as kept, unless already out of the window: possible only under a flood)
        rec = self.registry.command(cmd.site_id, cmd.command_id) or record_of(entry, md.offset)
        self.count(f"commands.{rec.status}")
        self.metrics.commands.labels(rec.status, rec.code or "").inc()
        if rec.catalog_offset == md.offset:
            if rec.status == "ACCEPTED":
                self._fault("fan_out", cmd)
            await self.fan_out(cmd.site_id, rec, cmd.command_id, cmd.issued_at)
        await self.publish_result(cmd.site_id, rec)

    def _verified_actor(self, cmd: Command) -> tuple[Command, Decision | None]:
        """With COMMANDS_REQUIRE_TOKEN=1, the actor comes from the command's verified token, not
        from what the record claims; a command without a valid token is REJECTED FORBIDDEN. The
        token itself is dropped here: it never reaches the catalog log or a result."""
        from dataclasses import replace

        if not self.s.commands_require_token:
            return replace(cmd, auth_token=None), None
        from processor.api.auth import command_principal
        from processor.errors import ProcessorError

        try:
            p = command_principal(cmd.site_id, cmd.auth_token, self.auth)
        except ProcessorError as err:
            self.count("commands.token_refused")
            return replace(cmd, auth_token=None), Decision("REJECTED", err.code, err.message, err.path)
        return replace(cmd, actor=Actor(p.sub, p.roles), auth_token=None), None

    async def fan_out(self, site_id: str, rec: CommandRecord, command_id: str, issued_at: int) -> None:
        plan = rec.backfill
        if rec.status != "ACCEPTED" or plan is None:
            return
        body = json.dumps(
            {
                "site_id": site_id,
                "catalog_offset": rec.catalog_offset,
                "command_id": command_id,
                "cause_kind": plan.cause_kind,  # type: ignore[attr-defined]
                "occurred_at": issued_at,
                "segments": [list(s) for s in plan.segments],  # type: ignore[attr-defined]
            },
            sort_keys=True,
        ).encode()
        for p in range(self.s.partitions):
            await self.control_out.send(key=site_id.encode(), value=body, partition=p)

    async def publish_result(self, site_id: str, rec: CommandRecord) -> None:
        res = CommandResult(rec.command_id, site_id, rec.status, rec.code, rec.message, rec.processed_at)
        await self.results_out.send(key=site_id.encode(), value=encode_command_result(res))
