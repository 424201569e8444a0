"""The worker: builds the Faust app, its topics, table and agents, and wires the handlers to them.

Wiring only; what each piece does is in its module (docs/architecture.md has the map):

* agent ``users``: user events and the control topic (same partition count, so partition p of
  both is one worker's), through the guard to processor/handlers (user events, backfill orders,
  timer ticks); owns the ``users`` table (processor/runtime/store.py);
* agent ``commands``: automation commands (processor/handlers/commands.py);
* the checkpoint (processor/runtime/checkpoint.py) releases the outbox and lets Faust's offset
  commits through; its background loop runs as an app task;
* a timer queues ticks for due time-relative re-evaluations;
* the HTTP layer is installed with one call on a narrow read model (processor/runtime/read_model.py);
* the contract topics are read and written in the settings' wire format (processor/wire.py:
  schemaless Avro, or Schema Registry-framed); an input record the registry cannot resolve yet
  holds its partition until it can (processor/runtime/dead_letters.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from processor.runtime import faust_compat

faust_compat.apply()  # refuses an untested faust-streaming; patches listed in faust_compat

from processor.catalog.registry import CatalogRegistry  # noqa: E402
from processor.config import Settings  # noqa: E402
from processor.contract import cloudevents, schemas  # noqa: E402
from processor.contract.models import MembershipChange  # noqa: E402
from processor.handlers.users import UsersPartition  # noqa: E402
from processor.handlers.backfill import Backfill  # noqa: E402
from processor.handlers.commands import Commands  # noqa: E402
from processor.handlers.guard import Guard, WireReadiness  # noqa: E402
from processor.handlers.progress import Reporter  # noqa: E402
from processor.handlers.ports import Stats  # noqa: E402
from processor.handlers.replay import Replay, unprocessed  # noqa: E402
from processor.handlers.timers import Timers  # noqa: E402
from processor.handlers.user_events import UserEvents  # noqa: E402
from processor.metrics import Metrics  # noqa: E402
from processor.runtime import clients  # noqa: E402
from processor.runtime.broker_profile import fetch_max_wait_ms, profile_for  # noqa: E402
from processor.runtime.catalog_log import CatalogLog  # noqa: E402
from processor.runtime.changelog import ChangelogProducer  # noqa: E402
from processor.runtime.checkpoint import Checkpoint  # noqa: E402
from processor.runtime.dead_letters import DeadLetterProducer, DeadLetters  # noqa: E402
from processor.runtime.outbox import Outbox, OutboxSink  # noqa: E402
from processor.runtime.output_producer import OutputProducer  # noqa: E402
from processor.runtime.read_model import WorkerReadModel  # noqa: E402
from processor.runtime.store import RocksTableStore  # noqa: E402
from processor.wire import WireFormat  # noqa: E402

log = logging.getLogger("processor")
RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
TICK_SECONDS = 5.0  # how often each worker checks its partitions for due time-relative re-evaluations


class Bus:
    """The topics the handlers write through Faust's producer (processor/handlers/ports.py)."""

    def __init__(self, catalog_out: Any, control_out: Any, results_out: Any) -> None:
        self._catalog, self._control, self._results = catalog_out, control_out, results_out

    async def append_catalog(self, site_id: str, entry: bytes) -> int:
        fut = await self._catalog.send(key=site_id.encode(), value=entry)
        return int((await fut).offset)

    async def append_catalog_later(self, site_id: str, entry: bytes) -> Any:
        return _Offset(await self._catalog.send(key=site_id.encode(), value=entry))

    async def control(self, partition: int, key: bytes, body: bytes) -> None:
        await self._control.send(key=key, value=body, partition=partition)

    async def result(self, site_id: str, value: bytes) -> None:
        await self._results.send(key=site_id.encode(), value=value)


class _Offset:
    """A queued record's offset, once the broker acknowledged it (awaitable; nothing to await if
    nobody asks)."""

    __slots__ = ("fut",)

    def __init__(self, fut: Any) -> None:
        self.fut = fut

    def __await__(self) -> Any:
        meta = yield from self.fut.__await__()
        return int(meta.offset)


class Runtime:
    """One worker process's pieces; ``app`` is the Faust app that ``faust.Worker`` runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        t = s.topics
        profile = profile_for(s)
        faust_compat.set_fetch_max_wait_ms(fetch_max_wait_ms(s, profile))
        self.app = app = clients.faust_app(
            s, profile,
            store="rocksdb://",
            datadir=str(s.state_dir),
            web_port=s.web_port,
            web_bind=s.web_host,
            web_host=s.canonical_host,
            canonical_url=f"http://{s.canonical_host}:{s.web_port}",
            processing_guarantee="at_least_once",
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication_factor or 1,  # the worker passes the one topics.py chose
            topic_allow_declare=False,
            topic_disable_leader=True,
            table_standby_replicas=0,
            stream_wait_empty=True,
            # After kill -9 the local RocksDB can be ahead of the changelog; the engine is
            # replay-safe (it re-emits, never skips), so keep the local state and go on.
            recovery_consistency_check=False,
            # None of Faust's own web views (its /table/ view reads any table key without a token).
            web_router_enabled=False,
            web_tables_enabled=False,
            web_stats_enabled=False,
            web_graph_enabled=False,
            web_metrics_enabled=False,
        )
        self.users_in = app.topic(t.user_events, t.control, **RAW)
        self.commands_in = app.topic(t.commands, **RAW)
        self.commands_out = app.topic(t.commands, **RAW)
        bus = Bus(app.topic(t.catalog, **RAW), app.topic(t.control, **RAW), app.topic(t.command_results, **RAW))
        self.wire = WireFormat.from_settings(s)
        self.metrics = Metrics()
        self.metrics.watch_gc()
        self.stats = Stats(self.metrics)
        self.registry = CatalogRegistry(s.command_window)
        self.catalog = CatalogLog(s.bootstrap_servers, t.catalog, self.registry, s.kafka_security)

        # the users table: Faust's store, our changelog client (processor/runtime/store.py)
        table = app.Table("users", partitions=s.partitions, key_type=bytes, value_type=bytes)
        self.table = table
        self.changelog = ChangelogProducer(s.changelog_topic, clients.changelog_config(
            s.bootstrap_servers, f"{s.app_id}-changelog", profile.records_per_batch), s.kafka_security)
        self.changelog.on_error = self._changelog_failed
        self.store = RocksTableStore(table.data, self.changelog, s.changelog_topic, self._owned_partitions)

        # the outbox and the commit protocol (processor/runtime/checkpoint.py)
        self.outputs = OutputProducer(s.bootstrap_servers, client_id=f"{s.app_id}-changes",
                                      linger_ms=s.output_linger_ms, security=s.kafka_security)
        self.outbox = Outbox()
        self._fault_armed = False  # FAULT_EXIT_BEFORE_SEND (crash tests only)
        self.checkpoint = Checkpoint(
            self.outbox, flush_state=self._flush_state, persist=self.store.persist_offsets,
            send=self._send_change, flush_output=self.outputs.flush,
            failures=lambda: self.outputs.failed, failure_detail=self.outputs.last_error,
            on_release=self.metrics.observe_drain, before_send=self._before_send,
            output_topic=t.membership_changes)
        faust_compat.route_commits(app, self.checkpoint)
        changes = OutboxSink(self.outbox, self.checkpoint.release, on_emit=self._on_emit,
                             encode=self.wire.encode_membership_change,
                             headers=cloudevents.header_builder(self.wire.framed) if s.cloudevents else None)

        # the handlers (processor/handlers)
        self.replay = Replay(t.user_events, t.control, changes, self.stats,
                             committed=lambda topic, p: faust_compat.committed_offset(app, topic, p))
        self.timers = Timers(self.store, changes, self.catalog, self.replay, self.stats, bus)
        self.users = UsersPartition(
            t.control,
            UserEvents(self.store, changes, self.catalog, self.replay, self.stats, wire=self.wire),
            Backfill(self.store, changes, self.catalog, self.replay, self.stats,
                     reporter=Reporter(self.catalog, bus, self.stats, changes=changes, wire=self.wire),  # progress.py
                     fault_delay=self._backfill_fault_delay() if s.fault_backfill_delay else None),
            self.timers)
        self.commands = Commands(self.catalog, bus, self.stats, s.partitions, verify=self._command_verifier(),
                                 fault=self._command_fault, settle_timeout_s=max(30.0, s.session_timeout_s),
                                 wire=self.wire)
        self.dead_letters = DeadLetters(
            t.dead_letters,
            DeadLetterProducer(s.bootstrap_servers, f"{s.app_id}-dead-letters", s.dead_letter_max_bytes,
                               s.dead_letter_timeout_ms, s.kafka_security),
            faust_compat.ConsumerPartitions(app), self.metrics, s.dead_letter_max_bytes, s.dead_letter_retry_max_s,
            encode=self.wire.encode_dead_letter)
        inputs = {t.user_events: schemas.USER_EVENT, t.commands: schemas.AUTOMATION_COMMAND}
        self.guard = Guard(self.dead_letters, self.replay, self.stats,
                           ready=WireReadiness(self.wire, inputs, self.stats) if self.wire.framed else None)
        faust_compat.limit_commits(app, self.guard.commit_limit)

        from processor.history_reader import attach as attach_history  # history and audit index (issue 21)

        self.history = attach_history(app, s)
        self.read_model = WorkerReadModel(self)
        self._wire()
        self._install_http()

    # ------------------------------------------------------------------ wiring
    def _wire(self) -> None:
        app = self.app

        @app.task
        async def start_catalog() -> None:
            await self.catalog.start()

        @app.task
        async def release_changes() -> None:
            await self.checkpoint.run()

        @app.task
        async def warm_clients() -> None:
            # librdkafka's clients connect lazily; the idempotent changelog client's first record
            # would wait for its producer id, holding the first events' changes
            await asyncio.gather(self.changelog.warm(), self.outputs.warm(self.settings.topics.membership_changes))

        @app.on_before_shutdown.connect
        async def stop(app: Any, **kwargs: Any) -> None:
            self.dead_letters.stop()
            await self.catalog.stop()

        @app.on_partitions_revoked.connect
        async def on_revoke(app: Any, revoked: Any, **kwargs: Any) -> None:
            self.dead_letters.on_revoke()  # paused partitions: their next owners re-read them
            await self.checkpoint.release()  # the next owner should not race this worker's late sends
            self.replay.reset()
            self.guard.new_assignment()

        @app.on_partitions_assigned.connect
        async def on_assign(app: Any, assigned: Any, **kwargs: Any) -> None:
            self.replay.reset()
            self.guard.new_assignment()

        @app.agent(self.users_in, name="users")
        async def users_agent(stream: Any) -> None:
            await self.catalog.ready.wait()
            async for event in stream.events():
                await self.guard.run(event.message, self.users.handle)

        @app.agent(self.commands_in, name="commands")
        async def commands_agent(stream: Any) -> None:
            await self.catalog.ready.wait()
            async for event in stream.events():
                await self.guard.run(event.message, self.commands.handle)

        @app.timer(interval=TICK_SECONDS)
        async def tick_due_timers() -> None:
            await self.timers.send_ticks(int(time.time()))

    def _install_http(self) -> None:
        from processor import http

        faust_compat.drop_faust_views(self.app)
        http.install(self.app.web.web_app, self.read_model, self.settings)

    # ------------------------------------------------------------ the pieces
    def _owned_partitions(self) -> list[int]:
        topic = self.settings.topics.user_events
        return [tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic]

    async def _flush_state(self) -> None:
        await self.store.flush()  # the users changelog; raises after a failed record
        await faust_compat.durable_flush(self.app.producer)  # Faust's own sends of this moment

    async def _send_change(self, key: bytes, value: bytes, headers: cloudevents.Headers | None) -> None:
        await self.outputs.send(self.settings.topics.membership_changes, key, value, headers)

    def _on_emit(self, change: MembershipChange) -> None:
        self.stats.change(change.change, change.cause_kind)
        fault = self.settings.fault_exit_before_send
        if fault and fault in (change.cause_kind, f"{change.cause_kind}@{change.site_id}"):
            self._fault_armed = True

    def _before_send(self) -> None:
        if self._fault_armed:
            log.critical("FAULT_EXIT_BEFORE_SEND=%s: exiting before the send", self.settings.fault_exit_before_send)
            os._exit(137)  # like kill -9: no flush, no commit, no revoke

    def _command_fault(self, stage: str, cmd: Any) -> None:
        """FAULT_COMMAND_RAISE=<stage>:<command_id prefix>[,...] (failure tests only, never in
        production): raise an unexpected error at ``stage`` (decide, fan_out) for matching commands."""
        for spec in (self.settings.fault_command_raise or "").split(","):
            where, _, prefix = spec.partition(":")
            if where == stage and prefix and cmd.command_id.startswith(prefix):
                raise RuntimeError(f"injected fault at {stage} (FAULT_COMMAND_RAISE); see /srv/processor/{stage}.py")

    def _backfill_fault_delay(self) -> Any:
        """FAULT_BACKFILL_DELAY=<ms>:<command_id prefix>[,...] (takeover tests only, never in
        production): each chunk of a matching command's backfill waits <ms> first."""
        specs = []
        for spec in (self.settings.fault_backfill_delay or "").split(","):
            ms, _, prefix = spec.partition(":")
            if prefix:
                specs.append((prefix, int(ms) / 1000))
        return lambda order: next((s for p, s in specs if order.command_id.startswith(p)), 0.0)

    def _command_verifier(self) -> Any:
        """COMMANDS_REQUIRE_TOKEN=1: a command's actor comes from its token, verified as the API
        verifies a bearer token (None: not required)."""
        if not self.settings.commands_require_token:
            return None
        from processor.api.auth import AuthConfig, command_principal

        auth = AuthConfig.from_settings(self.settings)
        return lambda site_id, token: command_principal(site_id, token, auth)

    def _changelog_failed(self, exc: BaseException) -> None:
        """The local store now holds a write its changelog does not: never release the changes
        behind it (every flush raises from now on) and stop like a crash; the next owner replays
        the uncommitted input and re-emits, the same state as after kill -9."""
        self.stats.count("changelog.send_errors")
        log.critical("users changelog write failed: %r; stopping the worker", exc)
        asyncio.ensure_future(self.app.crash(exc))

    # ------------------------------------------------------------- read side
    def readiness(self) -> tuple[bool, bool]:
        """(catalog loaded, table recovery complete): /readyz and the ``segment_ready`` gauge."""
        return self.catalog.ready.is_set(), faust_compat.tables_recovered(self.app)

    def update_gauges(self) -> None:
        self.metrics.catalog_offset.set(self.registry.applied_offset)
        self.metrics.ready.set(1 if all(self.readiness()) else 0)
        try:
            consumer = self.app.consumer
            self.metrics.lag.clear()  # only the partitions assigned now: a revoked one's last value would stay
            for tp in self.app.assignor.assigned_actives():
                hw = consumer.highwater(tp)
                if hw is not None:
                    lag = unprocessed(hw, self.replay.done_offset(tp.topic, tp.partition))
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
        except Exception:  # noqa: BLE001 - metrics must never fail a scrape
            pass
